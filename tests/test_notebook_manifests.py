import papermill as pm

from abawkit.manifest import load_manifest
from conftest import REPO


def test_manifest_notebook_executes(tiny_demo, tmp_path):
    out_dir = tmp_path / "manifest"
    pm.execute_notebook(str(REPO / "notebooks" / "00_manifests.ipynb"), str(tmp_path / "00.ipynb"),
                        parameters={"affwild2_root": str(tiny_demo), "manifest_dir": str(out_dir),
                                    "demo_seed": None},
                        kernel_name="python3", cwd=str(REPO), progress_bar=False)
    assert len(load_manifest(out_dir).videos) == 6
