import subprocess
import sys
from pathlib import Path

from avaffect.tools.layers import check, main


def package(root: Path, modules: dict[str, str]) -> Path:
    """A package folder `avaffect` under `root` with the given modules (dotted name below it -> source)."""
    top = root / "avaffect"
    top.mkdir()
    (top / "__init__.py").write_text('"""top"""\n')
    for name, source in modules.items():
        path = top.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    return top


def test_the_library_keeps_its_layers_and_has_no_import_cycle():
    result = subprocess.run([sys.executable, "-m", "avaffect.tools.layers"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "layers hold" in result.stdout


def test_an_upward_import_is_named_with_its_line_also_inside_a_function(tmp_path):
    root = package(tmp_path, {
        "core.files": "def write():\n    from avaffect.models.training import train\n",
        "models.training": "def train():\n    pass\n",
    })
    assert check(root) == [
        "avaffect.core.files (line 2) imports avaffect.models.training: 'models' is a higher layer than 'core'"]
    assert main([str(root)]) == 1


def test_siblings_in_one_layer_do_not_import_each_other(tmp_path):
    root = package(tmp_path, {"face.boxes": "from avaffect.audio import vad\n", "audio.vad": ""})
    assert check(root) == [
        "avaffect.face.boxes (line 1) imports avaffect.audio.vad: 'audio' is a sibling of 'face'"]


def test_a_cycle_within_a_package_is_named_and_downward_imports_pass(tmp_path):
    root = package(tmp_path, {
        "face.detectors": "from avaffect.face.retinaface import RetinaFace\nfrom avaffect.core import files\n",
        "face.retinaface": "from avaffect.face.detectors import build\n",
        "core.files": "",
    })
    assert check(root) == [
        "import cycle: avaffect.face.detectors -> avaffect.face.retinaface -> avaffect.face.detectors"]


def test_a_package_in_no_layer_is_named(tmp_path):
    root = package(tmp_path, {"cli.predict": "from avaffect.core import files\n", "core.files": ""})
    assert check(root) == [
        "avaffect.cli.predict (line 1) imports avaffect.core.files: package 'cli' is in no layer (add it to LAYERS)"]
    assert main([str(root)]) == 1
