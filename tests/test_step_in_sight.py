"""The training step stays in sight (issue 26): the functions reachable from run_exp.main down to the
optimizer's step span at most 3 files and 400 lines, counted with `ast`. `python -m
tests.test_step_in_sight` prints that figure, what run_exp.train calls into (the passes' machinery
included) and everything run_exp.main reaches.

How it counts. Every function and method of the project's files (the root's .py and utils/) is a
node; a call is an edge when `ast` can name its target: a function of the same module, a name or
module imported (at any depth), `Cls(...)` (its __init__, __iter__, __enter__ and __exit__: what a
`for` or a `with` over it runs), and `obj.method(...)` (every method of that name in the modules
the caller imports). "Down to the step": the reachable functions from which a call `*.step(...)`
(optimizer.step(), scaler.step(optimizer)) is reachable. Calls through a variable holding a module
(run.nll(...) -> the model's forward) are not followed: the models are the assignment's files.
"""
import ast
import os
import unittest

from tests import fixtures

SPECIAL = ("__init__", "__iter__", "__enter__", "__exit__")


def project_modules():
    """{module name: path} of the root's .py files and utils/."""
    found = {}
    for folder, dirs, files in os.walk(fixtures.REPO_ROOT):
        rel = os.path.relpath(folder, fixtures.REPO_ROOT)
        if rel != "." and not (rel == "utils" or rel.startswith("utils" + os.sep)):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d not in ("__pycache__",)]
        for name in files:
            if name.endswith(".py"):
                parts = [] if rel == "." else rel.split(os.sep)
                module = ".".join(parts + ([] if name == "__init__.py" else [name[:-3]]))
                found[module] = os.path.join(folder, name)
    return found


class Graph:
    def __init__(self):
        self.functions = {}  # "module:qualname" -> (path, lines, node, module)
        self.imports = {}  # module -> {local name: "module" or "module:name"}
        self.methods = {}  # method name -> ["module:Class.name"]
        self.modules = project_modules()
        for module, path in self.modules.items():
            with open(path) as handle:
                tree = ast.parse(handle.read(), path)
            self.imports[module] = names = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    for alias in node.names:
                        target = f"{node.module}.{alias.name}"
                        names[alias.asname or alias.name] = target if target in self.modules else \
                            f"{node.module}:{alias.name}"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        names[alias.asname or alias.name.split(".")[0]] = alias.name
            for node in tree.body:
                self._add(module, path, node, "")

    def _add(self, module, path, node, prefix):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            key = f"{module}:{prefix}{node.name}"
            self.functions[key] = (path, node.end_lineno - node.lineno + 1, node, module)
            if prefix:
                self.methods.setdefault(node.name, []).append(key)
        elif isinstance(node, ast.ClassDef):
            for child in node.body:
                self._add(module, path, child, f"{prefix}{node.name}.")

    def callees(self, key):
        """The functions `key` calls that ast can name, and whether it calls `*.step(...)`."""
        path, _, node, module = self.functions[key]
        names, found, steps = self.imports[module], set(), False
        imported = {v.partition(":")[0] for v in names.values()} | {module}
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "step":
                steps = True
            if isinstance(func, ast.Name):
                target = names.get(func.id, f"{module}:{func.id}")
                found |= self._named(target)
            elif isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else None
                if owner in names and names[owner] in self.modules:  # module.function(...)
                    found |= self._named(f"{names[owner]}:{func.attr}")
                else:  # obj.method(...): that method of the classes of the modules this one imports
                    found |= {m for m in self.methods.get(func.attr, []) if m.partition(":")[0] in imported}
        return found, steps

    def _named(self, target):
        if target in self.functions:
            return {target}
        return {k for k in self.functions if any(k == f"{target}.{s}" for s in SPECIAL)}  # a class: what it runs

    def reachable(self, start):
        seen, todo = set(), [start]
        while todo:
            key = todo.pop()
            if key not in seen and key in self.functions:
                seen.add(key)
                todo += sorted(self.callees(key)[0])
        return seen

    def down_to_step(self, start):
        """The functions reachable from `start` from which a `*.step(...)` call is reachable."""
        reach = self.reachable(start)
        return {k for k in reach if any(self.callees(f)[1] for f in self.reachable(k))}

    def step_body(self, key="run_exp:train"):
        """What the body of `key`'s `for` loop (the step) calls, and everything that reaches."""
        path, _, node, module = self.functions[key]
        names = dict(self.imports[module])  # with the function's own imports
        loop = next(n for n in ast.walk(node) if isinstance(n, ast.For))
        imported = {v.partition(":")[0] for v in names.values()}
        found = set()
        for call in (n for n in ast.walk(loop) if isinstance(n, ast.Call)):
            if isinstance(call.func, ast.Name):
                found |= self._named(names.get(call.func.id, f"{module}:{call.func.id}"))
            elif isinstance(call.func, ast.Attribute):
                found |= {m for m in self.methods.get(call.func.attr, []) if m.partition(":")[0] in imported}
        return set().union(*(self.reachable(k) for k in found))

    def span(self, keys):
        """(files, lines, functions)."""
        files = sorted({os.path.relpath(self.functions[k][0], fixtures.REPO_ROOT) for k in keys})
        return files, sum(self.functions[k][1] for k in keys), sorted(keys)


class TheStepIsInSight(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.graph = Graph()

    def test_main_down_to_the_optimizer_step(self):
        files, lines, keys = self.graph.span(self.graph.down_to_step("run_exp:main"))
        self.assertIn("run_exp:train", keys)  # the step is found: the count is not vacuous
        self.assertLessEqual(len(files), 3, files)
        self.assertLessEqual(lines, 400, keys)

    def test_the_counter_follows_calls(self):
        keys = self.graph.reachable("run_exp:main")
        self.assertIn("utils.train.run:open_run", keys)
        self.assertIn("utils.train.run:Run.finish", keys)


if __name__ == "__main__":
    graph = Graph()
    for title, keys in (("run_exp.main down to the optimizer step", graph.down_to_step("run_exp:main")),
                        ("what the step's lines call (run_exp.train's loop body)", graph.step_body()),
                        ("what run_exp.train calls into", graph.reachable("run_exp:train")),
                        ("everything run_exp.main reaches", graph.reachable("run_exp:main"))):
        files, lines, names = graph.span(keys)
        print(f"{title}: {len(names)} functions, {lines} lines, {len(files)} files ({', '.join(files)})")
