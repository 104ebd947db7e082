"""Write docs/config_reference.md from the typed config schema (hydranet.tools.config_reference).

    python scripts/config_reference.py            # rewrite the page
    python scripts/config_reference.py --check    # exit 1 when the checked-in page is out of date

tests/test_config_reference.py runs the check, so a schema change without the regenerated
page fails the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "config_reference.md"


def render() -> str:
    """The page as the schema describes it now."""
    sys.path.insert(0, str(REPO))
    from hydranet.tools.config_reference import markdown

    return markdown().rstrip("\n") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when they differ")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(REPO)} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        print(f"{PAGE.relative_to(REPO)} is up to date")
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
