"""Merging an adapter into a Hugging Face folder, and the export command's refusals."""

from __future__ import annotations

import pytest
import torch
import yaml

import tuneforge
from tuneforge.cli import main
from tuneforge.errors import OutputError
from tuneforge.infer import resolve_model

# float32 merge: W + (B @ A) * scale summed once instead of on every forward pass.
MERGE_TOLERANCE = 1e-5


def test_merged_logits_equal_base_plus_adapter_logits(
    tiny_adapter_dir, tiny_model_dir, tmp_path, unmerged
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result = tuneforge.export(tiny_adapter_dir, out)
    assert result.ok and result.path == out and result.modelfile is None
    assert [check.agreed == check.total for check in result.checks] == [True, True]

    ids = torch.tensor([[1, 9690, 198, 2683, 359, 346, 47, 2, 198, 1, 520, 9531, 198]])
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        expected = unmerged(tiny_adapter_dir)(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=MERGE_TOLERANCE, rtol=0)

    assert AutoTokenizer.from_pretrained(out).chat_template  # the template travels along
    saved = yaml.safe_load((out / "tuneforge_config.yaml").read_text())
    base = str(tiny_model_dir)  # the model tiny_adapter_dir was trained on
    assert saved["model_name_or_path"] == base and saved["adapter_name_or_path"] is None
    exported = resolve_model(out)  # and the folder's own weights are what loads
    assert (exported.base, exported.weights, exported.adapter) == (base, str(out), None)
    assert tuneforge.chat(out).reply(
        [{"role": "user", "content": "Hi"}],
        tuneforge.load_config({"do_train": False, "max_new_tokens": 3}).generation,
    )


def test_an_existing_out_is_replaced_only_with_overwrite(tiny_adapter_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists; add --overwrite"):
        tuneforge.export(tiny_adapter_dir, out)
    assert (out / "keep.txt").read_text() == "mine"
    assert tuneforge.export(tiny_adapter_dir, out, overwrite=True).ok
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tuneforge-export-")]


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["--quiet", *argv])
    return code, [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("tuneforge")
    ]


def test_bad_inputs_get_one_line_each(
    capsys,
    tmp_path,
    tiny_model_dir,
    wide_tiny_model_dir,
    make_lora_adapter,
    make_tiny_model,
    tokenizer,
):
    from transformers import GPT2Config, GPT2LMHeadModel

    empty = tmp_path / "not-an-adapter"
    empty.mkdir()
    code, err = run_cli(capsys, "export", "--adapter", str(empty), "--out", str(tmp_path / "a"))
    assert code != 0 and len(err) == 1 and "no adapter_config.json" in err[0]

    wide_adapter = make_lora_adapter(wide_tiny_model_dir, tmp_path / "wide-lora")
    code, err = run_cli(
        capsys,
        "export",
        f"model_name_or_path={tiny_model_dir}",
        "--adapter",
        str(wide_adapter),
        "--out",
        str(tmp_path / "b"),
    )
    assert code != 0 and len(err) == 1 and "made for a different model" in err[0]

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    ).save_pretrained(gpt2)
    tokenizer.save_pretrained(gpt2)
    code, err = run_cli(capsys, "export", "--adapter", str(gpt2), "--out", str(tmp_path / "c.gguf"))
    assert code != 0 and len(err) == 1
    assert "GGUF export supports llama models; this one is 'gpt2'" in err[0]

    code, err = run_cli(
        capsys,
        "export",
        "--adapter",
        str(tiny_model_dir),
        "--out",
        str(tmp_path / "d"),
        "--format",
        "gguf",
    )
    assert code != 0 and err == [
        (
            f"tuneforge: error: --out {tmp_path / 'd'}: a GGUF export is "
            f"one file; give a path ending in .gguf"
        )
    ]
