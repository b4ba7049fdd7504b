"""No import cycles at all in Serena's code. The `acyclic_siblings` contract that `lint-imports` checks in CI sees
cycles between the modules of one package; a cycle through a package's own `__init__` or across top-level packages
is only caught here."""

import grimp

PACKAGES = ("modules", "serena_kit", "training")


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One cycle (a -> ... -> a) for each direct import that something it imports leads back from."""
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append((importer, *back))
    return cycles


def test_the_cycle_finder_finds_a_cycle_through_a_package_init():
    graph = grimp.ImportGraph()
    graph.add_import(importer="kit", imported="kit.sweeps")
    graph.add_import(importer="kit.sweeps", imported="kit.grids")
    graph.add_import(importer="kit.grids", imported="kit")
    graph.add_import(importer="kit.grids", imported="engine")
    assert import_cycles(graph)[0] == ("kit", "kit.sweeps", "kit.grids", "kit")


def test_serena_has_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert import_cycles(graph) == []
