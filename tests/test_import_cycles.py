"""The package's imports form no cycle, at the level of modules.

The layer contracts of ``.importlinter`` (``make lint``) forbid imports that go up a layer;
this test covers what they cannot see: cycles among the modules of one layer. It counts every
import, those inside functions too (an import hidden in a function to dodge a cycle is still
a cycle), and leaves out ``if TYPE_CHECKING:`` imports, which never run.
"""

import pytest

grimp = pytest.importorskip("grimp")


def strongly_connected(edges: dict) -> list:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_strongly_connected_finds_a_cycle():
    assert strongly_connected({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [frozenset("abc")]


def test_the_package_has_no_import_cycle():
    graph = grimp.build_graph("hydranet", exclude_type_checking_imports=True, cache_dir=None)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    cycles = [sorted(c) for c in strongly_connected(edges)]
    assert not cycles, f"import cycles: {cycles}"
