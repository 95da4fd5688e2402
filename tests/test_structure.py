"""The layering a reader relies on: no import cycle between modules or
packages, no script that imports another script, numpy-only metrics, one
module that draws, models that import nothing of runtime/ (but the model
files' reader and writer, models/io.py), a runtime/ that imports none of
the other packages, the benchmark's modules used only by the benchmark and
the tests, and no function over 80 lines in the benchmark."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('bench', 'datasets', 'metrics', 'models', 'pipeline', 'runtime',
            'training')
#: The modules of the root folder that are not scripts; every other one is.
MODULES = ('chainer_compat', 'visualizations')
MAX_FUNCTION_LINES = 80


def top_level_modules():
    """``{name: path}`` of every module in the project's root folder (the
    scripts and the modules beside them)."""
    return {entry[:-3]: os.path.join(ROOT, entry)
            for entry in sorted(os.listdir(ROOT)) if entry.endswith('.py')}


SCRIPTS = tuple(sorted(set(top_level_modules()) - set(MODULES)))


def project_modules():
    """``{dotted name: path}`` of every module outside the tests, in the
    sub-packages too."""
    found = dict(top_level_modules())
    for package in PACKAGES:
        for d, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = sorted(x for x in dirs if x != '__pycache__')
            prefix = os.path.relpath(d, ROOT).replace(os.sep, '.')
            for entry in sorted(files):
                if entry.endswith('.py'):
                    name = prefix if entry == '__init__.py' else \
                        prefix + '.' + entry[:-3]
                    found[name] = os.path.join(d, entry)
    return found


def imports(path, known):
    """The project modules that ``path`` imports, anywhere in it (inside
    functions too): ``from a.b import c`` counts as ``a.b.c`` when that
    is a module, else as ``a.b``."""
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.update('%s.%s' % (node.module, a.name) for a in node.names)
            names.add(node.module)
    return {n for n in names if n in known}


def graph():
    known = project_modules()
    return {name: imports(path, known) - {name}
            for name, path in known.items()}


def find_cycle(edges):
    """A list of nodes that import each other in a circle, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def package_of(module):
    return module.split('.')[0]


def test_find_cycle_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
        'a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None


def test_no_import_cycle_between_modules():
    assert find_cycle(graph()) is None


def test_no_import_cycle_between_packages():
    edges = {}
    for module, targets in graph().items():
        edges.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) !=
            package_of(module))
    assert find_cycle(edges) is None


def test_the_scripts_are_found():
    assert {'demo', 'evaluate', 'experiment', 'make_pseudo_labels',
            'train_GAIN', 'train_classifier', 'train_fcn', 'tune',
            'visualize', 'weak'} <= set(SCRIPTS)
    assert set(MODULES) <= set(top_level_modules())


def test_no_script_imports_a_script():
    for module, targets in graph().items():
        assert not targets & set(SCRIPTS), (module, targets & set(SCRIPTS))


def top_level_imports(path):
    """The top-level names of every module ``path`` imports (anywhere in
    it): ``{'chainer', 'numpy', 'models', ...}``."""
    with open(path) as f:
        tree = ast.parse(f.read())
    names = {a.name.split('.')[0] for node in ast.walk(tree)
             if isinstance(node, ast.Import) for a in node.names}
    names |= {node.module.split('.')[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0}
    return names


def test_top_level_imports_sees_every_form(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('import a.b\nfrom c.d import e\n\n\ndef f():\n'
                    '    from g import h\n    import i as j\n')
    assert top_level_imports(str(path)) == {'a', 'c', 'g', 'i'}


def test_metrics_are_numpy_only():
    for module, path in project_modules().items():
        if package_of(module) == 'metrics':
            assert not top_level_imports(path) & {
                'chainer', 'cupy', 'matplotlib'}, module


def test_only_visualizations_imports_matplotlib():
    drawing = {module for module, path in project_modules().items()
               if 'matplotlib' in top_level_imports(path)}
    assert drawing == {'visualizations'}


def test_models_import_nothing_of_runtime():
    """The network and its Grad-CAM know nothing of how a run is operated
    (flags, files, guards, errors for the command line); only the reading
    and writing of model files uses runtime's two file primitives."""
    for module, path in project_modules().items():
        if package_of(module) == 'models' and module != 'models.io':
            assert 'runtime' not in top_level_imports(path), module


def test_runtime_is_the_process_shell():
    """runtime/ (flags, errors, device, the file primitives, the claim of
    --out) imports nothing of the other packages."""
    for module, path in project_modules().items():
        if package_of(module) == 'runtime':
            assert not top_level_imports(path) & set(PACKAGES) - {
                'runtime'}, module


def importers_from_outside(edges, package):
    """``{module: what it imports of package}`` for the modules outside
    ``package`` that import any of it."""
    found = {}
    for module, targets in edges.items():
        inside = {t for t in targets if package_of(t) == package}
        if package_of(module) != package and inside:
            found[module] = inside
    return found


def test_importers_from_outside_finds_one():
    edges = {'bench.run': {'bench.ops', 'models'}, 'demo': {'models'},
             'training.trainer': {'bench.dtypes', 'runtime'}}
    assert importers_from_outside(edges, 'bench') == {
        'training.trainer': {'bench.dtypes'}}


def test_only_bench_imports_bench():
    """The benchmark's modules (its dtype recorder, random batches,
    measuring and reporting) serve the benchmark and the tests alone."""
    edges = graph()
    assert any(package_of(m) == 'bench' for m in edges)
    assert importers_from_outside(edges, 'bench') == {}


def long_functions(source, limit=MAX_FUNCTION_LINES):
    """``[(name, lines)]`` of the functions in ``source`` (methods and
    nested functions too) longer than ``limit`` lines, counted from their
    ``def`` to their last line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_long_functions_counts_from_def_to_last_line():
    def body(indent):
        return ''.join('%sx%d = %d\n' % (indent, i, i) for i in range(79))
    source = ('def short():\n' + body(' ' * 4) + '\n\nclass A:\n'
              '    def long(self):\n' + body(' ' * 8) + '        pass\n')
    assert long_functions(source) == [('long', 81)]
    assert long_functions(source, limit=81) == []


def test_no_function_over_80_lines_in_bench():
    for module, path in project_modules().items():
        if package_of(module) == 'bench':
            with open(path) as f:
                assert long_functions(f.read()) == [], (module, path)
