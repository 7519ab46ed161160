"""Reading export and inference YAMLs: one pure pass that splits their own keys from the run
keys, applies overrides and flags in that order, and reports every problem at once."""

from __future__ import annotations

import pytest
import yaml

from tuneforge.config import read_export_config, read_infer_config
from tuneforge.errors import ConfigError


def write(tmp_path, **keys) -> str:
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(keys), encoding="utf-8")
    return str(path)


def problems(call) -> list[tuple[str | None, str]]:
    with pytest.raises(ConfigError) as caught:
        call()
    return [(problem.key, problem.message) for problem in caught.value.problems]


def test_yaml_then_overrides_then_flags(tmp_path):
    path = write(
        tmp_path,
        model_name_or_path="org/base",
        template="llama3",
        export_dir="from-yaml",
        export_size=5,
        export_legacy_format=True,
    )
    cfg = read_export_config(path, ["export_size=0.5", "export_legacy_format=null"])
    assert (cfg.args.export_dir, cfg.args.export_size, cfg.args.export_legacy_format) == (
        "from-yaml",
        0.5,
        False,
    )
    assert cfg.args.max_shard_bytes == 500_000_000
    assert cfg.run is not None and cfg.run.data.template == "llama3"
    assert cfg.run.train.do_train is False  # no dataset needed to use a model
    flagged = read_export_config(path, ["export_dir=from-override"], export_dir="from-flag")
    assert flagged.args.export_dir == "from-flag"
    assert read_export_config(path, export_dir=None).args.export_dir == "from-yaml"


def test_without_a_yaml_the_run_overrides_are_kept_for_the_folders_config():
    cfg = read_infer_config(None, ["infer_backend=vllm", "vllm_maxlen=2048", "template=chatml"])
    assert cfg.run is None and dict(cfg.overrides) == {"template": "chatml"}
    assert (cfg.args.infer_backend, cfg.args.vllm_maxlen) == ("vllm", 2048)


def test_every_problem_of_both_parts_at_once(tmp_path):
    path = write(
        tmp_path,
        model_name_or_path="org/base",
        infer_backend="tgi",
        infer_backnd="vllm",
        lora_rnak=8,
        cutoff_len=-1,
        sglang_mem_fraction=0.5,
        export_dir="out",
    )
    found = problems(lambda: read_infer_config(path))
    assert sorted(found, key=str) == sorted(
        [
            ("infer_backend", "infer_backend='tgi': allowed: huggingface, vllm or sglang"),
            ("infer_backnd", "unknown key 'infer_backnd'; did you mean 'infer_backend'?"),
            ("lora_rnak", "unknown key 'lora_rnak'; did you mean 'lora_rank'?"),
            ("cutoff_len", "cutoff_len=-1: Input should be greater than 0"),
            (
                "export_dir",
                "export_dir is a key of export YAMLs: use the file with `tuneforge export`",
            ),
        ],
        key=str,
    )


def test_an_engines_keys_need_that_engine():
    assert problems(lambda: read_infer_config(None, ["sglang_tp_size=2"])) == [
        (
            "sglang_tp_size",
            "sglang_tp_size applies to infer_backend: sglang (it is huggingface); remove the key",
        )
    ]
    assert read_infer_config(None, ["infer_backend=sglang", "sglang_tp_size=2"]).args


def test_refused_export_features_say_what_to_use_instead(tmp_path):
    path = write(
        tmp_path,
        export_dir="out",
        export_quantization_bit=4,
        export_quantization_nsamples=128,
        export_hub_model_id="me/model",
    )
    found = dict(problems(lambda: read_export_config(path)))
    assert set(found) == {"export_quantization_bit", "export_hub_model_id"}
    assert found["export_quantization_bit"].startswith(
        "export_quantization_bit, export_quantization_nsamples: quantised export (GPTQ) is "
        "not available in tuneforge"
    )
    assert "--quant q8_0" in found["export_quantization_bit"]


def test_the_yamls_in_the_serving_docs_are_read_as_written(tmp_path):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "serve.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"```yaml\n# (\w+)\.yaml\n(.*?)```", doc, flags=re.S))
    assert set(blocks) == {"infer", "merge"}
    infer = tmp_path / "infer.yaml"
    infer.write_text(blocks["infer"], encoding="utf-8")
    merge = tmp_path / "merge.yaml"
    merge.write_text(blocks["merge"], encoding="utf-8")
    served = read_infer_config(infer)
    assert served.run is not None and served.run.model.adapter_name_or_path == "saves/run1"
    exported = read_export_config(merge)
    assert exported.args.export_dir == "exports/run1-merged"
    assert exported.args.max_shard_bytes == 2 * 10**9


def test_a_training_config_is_told_where_export_and_inference_keys_go():
    from tuneforge.config.deploy_args import in_training_config

    assert in_training_config("export_size") == (
        "'export_size' belongs in an export YAML, read by `tuneforge export merge.yaml` after "
        "training, not in a training config; remove it here (docs/serve.md)"
    )
    assert "`tuneforge chat` or `api`" in in_training_config("vllm_maxlen")
    assert in_training_config("export_quantization_bit").startswith("'export_quantization_bit'")
    assert in_training_config("learning_rate") is None
