"""Functions from installed packages: the ``openhcs_rules.functions`` entry points.

The example plugin (examples/openhcs-example-plugin) is installed for real with pip into a scratch folder
once per session (the ``example_plugin`` fixture in tests/conftest.py, shared with the workflow test of a
plugin step, tests/workflow/test_plugins_workflow.py); the other plugins are real distributions too (a
``*.dist-info`` folder with METADATA and entry_points.txt next to a module), written here because each test
needs a differently broken one. Every folder is put on ``sys.path`` only for the test that uses it.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.cli import main
from openhcs_rules.core.arrays import gpu_available
from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline import Pipeline, Step, parse_pipeline
from openhcs_rules.pipeline.executor import RunContext, run_pipeline
from openhcs_rules.pipeline.registry import ENTRY_POINT_GROUP, clear_plugin_cache, get_function, list_functions

HEADER = "from openhcs_rules.pipeline import Pipeline, Step\n"
CONTEXT = RunContext(channel_names={1: "DAPI"}, nuclei_channel="DAPI")


@pytest.fixture
def on_path() -> Iterator[Callable[[Path], None]]:
    """Put folders of installed distributions on sys.path for one test, then forget their modules and plugins."""
    added: list[str] = []

    def add(folder: Path) -> None:
        sys.path.insert(0, str(folder))
        added.append(str(folder))
        importlib.invalidate_caches()
        clear_plugin_cache()

    yield add
    for folder in added:
        sys.path.remove(folder)
    for name, module in list(sys.modules.items()):
        if any(str(getattr(module, "__file__", None) or "").startswith(folder) for folder in added):
            del sys.modules[name]
    importlib.invalidate_caches()
    clear_plugin_cache()


def distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write an installed distribution (dist-info + modules) into ``root``, as pip would lay it out."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    return root


def pipeline_text(*steps: str) -> str:
    return HEADER + "pipeline = Pipeline(name='p', steps=[\n" + "".join(f"    {s},\n" for s in steps) + "])\n"


def squares_on_a_ramp() -> np.ndarray:
    """Four 10x10 bright squares on a background ramp brighter than some of them (one global threshold fails)."""
    x = np.mgrid[:96, :96][1]
    image = (x * 6.0).astype(np.float32)
    for y0, x0 in ((15, 15), (15, 65), (65, 25), (65, 70)):
        image[y0 : y0 + 10, x0 : x0 + 10] += 300.0
    return image


# --- the example plugin, installed by pip --------------------------------------------------------------------


def test_example_plugin_steps_parse_and_run_with_built_in_ones(example_plugin, on_path):
    on_path(example_plugin)
    text = pipeline_text(
        "Step(name='background', func='example.top_hat', kwargs={'radius': 8})",
        "Step(name='objects', func='example.otsu_objects', channel='nuclei', kwargs={'min_area': 20, 'sigma': 0.0})",
        "Step(name='measure', func='measure_objects')",
    )
    pipeline = parse_pipeline(text, source="plugin.py")
    assert [step.func for step in pipeline.steps] == ["example.top_hat", "example.otsu_objects", "measure_objects"]
    result = run_pipeline(pipeline, {(1, 1, 1, 1): squares_on_a_ramp()}, CONTEXT)
    assert [row["area_px"] for row in result.objects] == [100, 100, 100, 100]
    background = result.images[(1, 1, 1, 1)][:, :10]  # ramp only, no square: the top-hat took it away
    assert float(background.max()) < 1.0
    spec = get_function("example.top_hat")
    assert (spec.source, spec.kind, spec.memory_types) == ("openhcs-example-plugin", "image", ("numpy",))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ("{'radius': 'big'}", "plugin.py:3: step 'background': keyword 'radius' must be int, got str 'big'"),
        ("{'radius': 2.5}", "keyword 'radius' must be int, got float 2.5"),
        ("{'radius': True}", "keyword 'radius' must be int, got bool True"),
        ("{'raduis': 5}", "function 'example.top_hat' has no parameter 'raduis'; it takes: radius"),
    ],
)
def test_example_plugin_keywords_are_type_checked_at_load(example_plugin, on_path, kwargs, expected):
    on_path(example_plugin)
    text = pipeline_text(f"Step(name='background', func='example.top_hat', kwargs={kwargs})")
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text, source="plugin.py")
    assert expected in str(info.value)


def test_cli_lists_built_in_and_plugin_functions_with_their_source(example_plugin, on_path, capsys):
    on_path(example_plugin)
    assert main(["functions"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "openhcs-example-plugin" in lines["example.top_hat"]
    assert "(stack, radius: int = 15)" in lines["example.top_hat"]
    assert "labels" in lines["example.otsu_objects"]
    assert "built-in" in lines["denoise"] and "numpy,cupy" in lines["denoise"]


def test_unknown_name_suggests_and_lists_plugin_functions(example_plugin, on_path):
    on_path(example_plugin)
    with pytest.raises(PipelineError, match="Did you mean 'example.top_hat'.*from installed plugins: example"):
        get_function("example.tophat")


# --- the allow-list still holds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["os.system", "os:system", "lab_tools:run", "lab_tools.run", "openhcs_rules.functions.denoise:denoise"],
)
def test_a_pipeline_cannot_name_a_module_path(tmp_path, on_path, name):
    on_path(distribution(tmp_path, "lab-tools", {"lab.run": "lab_tools:run"}, {"lab_tools": "def run(stack): ..."}))
    with pytest.raises(PipelineError, match=f"unknown function '{name}'"):
        parse_pipeline(pipeline_text(f"Step(func='{name}')"), source="bad.py")
    assert "lab_tools" not in sys.modules


def test_built_in_names_are_never_replaced_and_plugins_load_only_when_named(tmp_path, on_path):
    module = """
        def denoise(stack, sigma: float = 1.0):
            raise AssertionError("the plugin's denoise ran")

        def other(stack):
            return stack
    """
    on_path(
        distribution(
            tmp_path,
            "shadow",
            {"denoise": "shadow_mod:denoise", "lab.other": "shadow_mod:other"},
            {"shadow_mod": module},
        )
    )
    pipeline = parse_pipeline(pipeline_text("Step(func='denoise', kwargs={'sigma': 2.0})"))
    run_pipeline(pipeline, {(1, 1, 1, 1): squares_on_a_ramp()}, CONTEXT)
    assert get_function("denoise").source == "built-in"
    assert "shadow_mod" not in sys.modules  # a pipeline of built-ins never imports a plugin
    problems = {item.name: item.problem for item in list_functions() if item.source == "shadow"}
    assert "can never replace one" in problems["denoise"] and problems["lab.other"] is None


def test_plugin_that_fails_to_import_is_an_error_only_where_a_pipeline_names_it(tmp_path, on_path):
    module = "import a_module_that_is_not_installed\n\ndef step(stack): ..."
    on_path(distribution(tmp_path, "broken-plugin", {"broken.step": "broken_mod:step"}, {"broken_mod": module}))
    parse_pipeline(pipeline_text("Step(func='denoise')"))
    with pytest.raises(PipelineError) as info:
        parse_pipeline(pipeline_text("Step(func='denoise')", "Step(func='broken.step')"), source="uses.py")
    message = str(info.value)
    assert message.startswith(
        "uses.py:4: entry point 'broken.step' = 'broken_mod:step' of distribution 'broken-plugin'"
    )
    assert "failed to load: ModuleNotFoundError: No module named 'a_module_that_is_not_installed'" in message
    listed = {item.name: item.problem for item in list_functions()}
    assert "ModuleNotFoundError" in listed["broken.step"]  # listing reports it and goes on


def test_one_name_from_two_distributions_is_an_error_naming_both(tmp_path, on_path):
    on_path(distribution(tmp_path / "a", "lab-a", {"lab.segment": "lab_a:segment"}, {"lab_a": "def segment(s): ..."}))
    on_path(distribution(tmp_path / "b", "lab-b", {"lab.segment": "lab_b:segment"}, {"lab_b": "def segment(s): ..."}))
    with pytest.raises(PipelineError, match="registered twice: .*'lab-a' and .*'lab-b'; uninstall one"):
        get_function("lab.segment")


def test_plugin_names_must_be_dotted(tmp_path, on_path):
    on_path(distribution(tmp_path, "flat", {"cellpose": "flat_mod:run"}, {"flat_mod": "def run(stack): ..."}))
    with pytest.raises(PipelineError, match="'cellpose'.*of distribution 'flat': plugin function names must be dotted"):
        get_function("cellpose")


# --- the signature contract ----------------------------------------------------------------------------------

_DECORATOR = "from openhcs_rules.pipeline.registry import processing_function\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(stack, *args): ...", "parameter 'args' is *args/**kwargs"),
        ("def f(stack, sigma: float = 1.0, **options): ...", "parameter 'options' is *args/**kwargs"),
        ("def f(stack, sigma=1.0): ...", "parameter 'sigma' has no annotation"),
        ("def f(stack, sigma: 'Undefined' = 1.0): ...", "cannot read the signature: NameError"),
        ("def f(stack, seeds: set = None): ...", "parameter 'seeds' is annotated set, which a literal cannot be"),
        ("def f(stack, sigma: float = 'wide'): ...", "parameter 'sigma' has default 'wide', which is not float"),
        ("def f(stack, sigma: float = 1.0, /): ...", "parameter 'sigma' is positional-only"),
        ("def f(*, sigma: float = 1.0): ...", "the first parameter must be the image stack"),
        ("def f(stack, illumination: float = 1.0): ...", "parameter 'illumination' uses a name the executor reserves"),
        ("f = 3", "int is not a function"),
        ("def f(stack): ...\nf.__openhcs_function__ = {'kind': 'labels'}", "must be set with @processing_function"),
        (_DECORATOR + "@processing_function(kind='measure')\ndef f(stack): ...", "ValueError: kind must be one of"),
        (_DECORATOR + "@processing_function(memory=('cupy',))\ndef f(stack): ...", "memory must include 'numpy'"),
    ],
)
def test_signature_contract_is_enforced_when_a_plugin_is_loaded(tmp_path, on_path, source, expected):
    on_path(distribution(tmp_path, "contract", {"lab.f": "contract_mod:f"}, {"contract_mod": source}))
    with pytest.raises(
        PipelineError, match="entry point 'lab.f' = 'contract_mod:f' of distribution 'contract'"
    ) as info:
        parse_pipeline(pipeline_text("Step(func='lab.f')"))
    assert expected in str(info.value)


def test_entry_point_value_must_name_a_function(tmp_path, on_path):
    on_path(distribution(tmp_path, "loose", {"lab.f": "loose_mod"}, {"loose_mod": "def f(stack): ..."}))
    with pytest.raises(PipelineError, match="the value must be 'package.module:function'"):
        get_function("lab.f")


def test_required_plugin_keywords_must_be_given(tmp_path, on_path):
    source = "def f(stack, model: str, diameter: float = 30.0):\n    return stack"
    on_path(distribution(tmp_path, "needs", {"lab.f": "needs_mod:f"}, {"needs_mod": source}))
    with pytest.raises(PipelineError, match="step 'lab.f': function 'lab.f' needs keyword\\(s\\) model"):
        parse_pipeline(pipeline_text("Step(func='lab.f')"))
    parse_pipeline(pipeline_text("Step(func='lab.f', kwargs={'model': 'nuclei'})"))


def test_plugin_returning_no_array_fails_naming_the_step(tmp_path, on_path):
    on_path(distribution(tmp_path, "listy", {"lab.f": "listy_mod:f"}, {"listy_mod": "def f(stack):\n    return [1]"}))
    with pytest.raises(PipelineError, match="step 'lab.f': function returned a list, expected an \\(n, y, x\\) array"):
        run_pipeline(Pipeline("p", [Step(func="lab.f")]), {(1, 1, 1, 1): squares_on_a_ramp()}, CONTEXT)


def test_plugins_default_to_numpy_only_image_steps(tmp_path, on_path):
    on_path(distribution(tmp_path, "plain", {"lab.f": "plain_mod:f"}, {"plain_mod": "def f(stack):\n    return stack"}))
    spec = get_function("lab.f")
    assert (spec.kind, spec.memory_types, spec.memory_type_for("cupy")) == ("image", ("numpy",), "numpy")
    assert get_function("denoise").memory_type_for("cupy") == "cupy"


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
def test_numpy_only_plugin_is_given_host_arrays_on_a_gpu_run(tmp_path, on_path):
    source = """
        import numpy as np

        def f(stack):
            assert type(stack) is np.ndarray, type(stack)
            return stack * 2
    """
    on_path(distribution(tmp_path, "host", {"lab.f": "host_mod:f"}, {"host_mod": source}))
    pipeline = Pipeline("p", [Step(func="denoise"), Step(func="lab.f"), Step(func="denoise")])
    image = squares_on_a_ramp()
    on_gpu = run_pipeline(pipeline, {(1, 1, 1, 1): image}, RunContext(channel_names={1: "DAPI"}, memory_type="cupy"))
    on_cpu = run_pipeline(pipeline, {(1, 1, 1, 1): image}, RunContext(channel_names={1: "DAPI"}))
    np.testing.assert_allclose(on_gpu.images[(1, 1, 1, 1)], on_cpu.images[(1, 1, 1, 1)], rtol=1e-4, atol=1e-3)


def test_labels_plugin_returning_the_wrong_number_of_planes_fails_naming_the_step(tmp_path, on_path):
    source = """
        import numpy as np
        from openhcs_rules.pipeline.registry import processing_function

        @processing_function(kind="labels")
        def f(stack):
            return np.zeros((1, *stack.shape[1:]), np.int32)
    """
    on_path(distribution(tmp_path, "flat-labels", {"lab.f": "flat_labels:f"}, {"flat_labels": source}))
    planes = {(1, 1, z, 1): squares_on_a_ramp() for z in (1, 2)}
    with pytest.raises(PipelineError, match="step 'lab.f': labels function returned shape \\(1, 96, 96\\), expected"):
        run_pipeline(Pipeline("p", [Step(func="lab.f")]), planes, CONTEXT)
