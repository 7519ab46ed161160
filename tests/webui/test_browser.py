"""The web UI in a real browser: headless Chromium against a server on loopback."""

from __future__ import annotations

import re
import time

from tuneforge.layout import checkpoints, is_complete
from tuneforge.webui.runner import TrainingRunner

TRAINING_S = 240  # generous: the CI machine has two shared cores


def _box(page, key: str):
    return page.locator(f"#tf-{key} input, #tf-{key} textarea").first


def _fill(page, key: str, value: object) -> None:
    """Type into a form field and leave it, which validates the form."""
    box = _box(page, key)
    box.fill(str(value))
    box.blur()


def _choose(page, key: str, value: str) -> None:
    """Type a value into a dropdown that accepts its own values."""
    box = page.locator(f"#tf-{key} input").first
    box.fill(value)
    box.press("Enter")


def _step(page) -> int:
    found = re.search(r"step (\d+) of", page.locator("#tf-progress").inner_text())
    return int(found.group(1)) if found else 0


def _wait(condition, timeout: float = TRAINING_S) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.5)


def test_switching_the_language_changes_labels(page, shot):
    from playwright.sync_api import expect

    expect(page.get_by_role("tab", name="Train", exact=True)).to_be_visible()
    expect(page.locator("#tf-learning_rate")).to_contain_text("Learning rate")
    page.locator("#tf-language").get_by_text("中文").click()
    expect(page.get_by_role("tab", name="训练", exact=True)).to_be_visible()
    expect(page.get_by_role("tab", name="对话", exact=True)).to_be_visible()
    expect(page.locator("#tf-learning_rate")).to_contain_text("学习率")
    expect(page.locator("#tf-learning_rate")).to_contain_text("峰值学习率")
    expect(page.locator("#tf-start")).to_have_text("开始训练")
    shot("train-zh")
    page.locator("#tf-language").get_by_text("English").click()
    expect(page.locator("#tf-start")).to_have_text("Start")


def test_bad_values_are_explained_next_to_their_field(page, shot):
    from playwright.sync_api import expect

    _fill(page, "learning_rate", "-1")
    error = page.locator("#tf-learning_rate-error")
    expect(error).to_have_text("⚠ learning_rate=-1: Input should be greater than 0")
    _fill(page, "cutoff_len", "long")
    expect(page.locator("#tf-cutoff_len-error")).to_contain_text(
        "cutoff_len='long': Input should be a valid integer"
    )
    expect(page.locator("#tf-train-message")).to_contain_text("Some fields need fixing")
    _fill(page, "dataset_dir", "no_registry")
    expect(page.locator("#tf-dataset_dir-error")).to_contain_text(
        "no_registry/dataset_info.json: not found"
    )
    shot("bad-values")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    _fill(page, "learning_rate", "1e-3")
    expect(error).to_be_hidden()


def test_a_saved_config_loads_back_into_the_form(page, workspace):
    from playwright.sync_api import expect

    page.locator("#tf-dataset input").click()
    page.get_by_role("option", name="qa", exact=True).click()
    _fill(page, "lora_rank", "32")
    page.get_by_text("More settings (any config key)").click()
    _fill(page, "extra", "early_stopping_steps: 2\nval_size: 0.2")  # a form key here wins
    _fill(page, "config-path", "saved/run.yaml")
    page.locator("#tf-save").click()
    expect(page.locator("#tf-train-message")).to_contain_text("Config saved to saved/run.yaml")
    saved = (workspace / "saved" / "run.yaml").read_text()
    assert "lora_rank: 32\n" in saved and "early_stopping_steps: 2\n" in saved
    _fill(page, "lora_rank", "4")
    page.locator("#tf-load").click()
    expect(page.locator("#tf-train-message")).to_contain_text("Config loaded from")
    expect(_box(page, "lora_rank")).to_have_value("32")
    expect(_box(page, "val_size")).to_have_value("0.2")
    expect(_box(page, "extra")).to_have_value("early_stopping_steps: 2\n")


def test_train_stop_resume_then_chat_with_the_result(page, shot, workspace):
    from playwright.sync_api import expect

    output = workspace / "saves" / "tiny"
    _choose(page, "model_name_or_path", str(workspace / "model"))
    page.locator("#tf-dataset input").click()
    page.get_by_role("option", name="qa", exact=True).click()
    expect(page.locator("#tf-first-samples")).to_contain_text("ForgeBot")  # the first samples
    # More steps than the test waits for: Stop, not the end of training, ends each run.
    for key, value in {
        "cutoff_len": 64,
        "val_size": 0.25,
        "max_steps": 100000,
        "logging_steps": 1,
        "eval_steps": 3,
        "save_steps": 1000,
        "learning_rate": 0.01,
        "output_dir": output,
    }.items():
        _fill(page, key, value)
    page.locator("#tf-plan").click()
    plan = page.locator("#tf-plan-report textarea")
    expect(plan).to_have_value(re.compile(r"Memory \(GB = 10\^9 bytes\)"), timeout=120_000)
    page.locator("#tf-start").click()
    expect(page.locator("#tf-train-message")).to_contain_text("Training started in")

    progress = page.locator("#tf-progress")
    expect(progress).to_contain_text("validation loss", timeout=TRAINING_S * 1000)
    expect(progress.locator("progress")).to_be_visible()
    lines = page.locator("#tf-plot g.mark-line path")
    expect(page.locator("#tf-plot")).to_contain_text("eval_loss")  # the legend
    expect(lines).to_have_count(2)  # training and validation loss
    _wait(lambda: all("L" in (lines.nth(i).get_attribute("d") or "") for i in range(2)))
    expect(progress).to_contain_text(re.compile(r"ETA (\d+[hms])"))
    page.locator("#tf-start").click()
    expect(page.locator("#tf-train-message")).to_contain_text("already running")
    shot("training")

    page.locator("#tf-stop").click()
    expect(page.locator("#tf-progress")).to_contain_text("Stopped", timeout=TRAINING_S * 1000)
    stopped_at = _step(page)
    assert [step for step, _ in checkpoints(output)] == [stopped_at]
    assert is_complete(output / f"checkpoint-{stopped_at}")

    page.locator("#tf-resume").click()
    expect(page.locator("#tf-train-message")).to_contain_text("Resuming the run in")
    _wait(lambda: _step(page) > stopped_at + 1)
    page.locator("#tf-stop").click()
    expect(page.locator("#tf-progress")).to_contain_text("Stopped", timeout=TRAINING_S * 1000)
    resumed_to = _step(page)
    assert [step for step, _ in checkpoints(output)] == [stopped_at, resumed_to]
    job = TrainingRunner(jobs_dir=workspace / "cache" / "webui-jobs").config_path(output).parent
    console = (job / "webui_console.log").read_text()
    assert not list(output.glob("webui_*"))  # job files stay outside the run folder
    assert f"checkpoint-{stopped_at}: step {stopped_at} of 100000" in console
    shot("stopped")

    page.get_by_role("tab", name="Chat", exact=True).click()
    _choose(page, "adapter", str(output))  # stopped, so its last checkpoint is used
    page.locator("#tf-chat-max_new_tokens input[type=number]").fill("8")
    page.locator("#tf-load-model").click()
    expect(page.locator("#tf-chat-status")).to_contain_text(f"Loaded {output}", timeout=120_000)
    message = page.locator("#tf-message textarea")
    message.fill("Who are you?")
    message.press("Enter")
    chat = page.locator("#tf-chatbot")
    expect(chat.get_by_test_id("user")).to_contain_text("Who are you?")
    expect(chat.get_by_test_id("bot")).to_have_count(1, timeout=60_000)
    expect(message).to_have_value("")
    shot("chat")
    page.locator("#tf-unload").click()
    expect(page.locator("#tf-chat-status")).to_contain_text("No model loaded")

    page.get_by_role("tab", name="Evaluate", exact=True).click()
    _choose(page, "run", str(output))
    page.locator("#tf-eval-max_new_tokens input").fill("8")
    page.locator("#tf-evaluate").click()
    metrics = page.locator("#tf-metrics")
    expect(metrics).to_contain_text("rouge_score_rougeL", timeout=180_000)
    for column in ("metric", "base", "tuned", "change"):
        expect(metrics).to_contain_text(column)
    expect(page.locator("#tf-samples")).to_contain_text("reference")
    assert (output / "eval" / "metrics.json").is_file()
    shot("evaluate")

    page.get_by_role("tab", name="Export", exact=True).click()
    _choose(page, "export-run", str(output))
    merged = f"{output}-merged"
    expect(_box(page, "export_out")).to_have_value(merged)
    page.locator("#tf-export").click()
    expect(page.locator("#tf-export-result textarea")).to_have_value(
        re.compile(f"^Exported to {re.escape(merged)}"), timeout=180_000
    )
    assert (workspace / "saves" / "tiny-merged" / "config.json").is_file()
    shot("export")


def test_choosing_a_preference_stage_shows_its_keys(page, shot):
    from playwright.sync_api import expect

    section = page.locator("#tf-section-preference")
    expect(section).to_be_hidden()
    for stage, shown, hidden in (
        ("dpo", ("pref_beta", "pref_loss", "simpo_gamma"), ("kto_chosen_weight",)),
        ("kto", ("pref_beta", "kto_chosen_weight"), ("pref_loss", "simpo_gamma")),
    ):
        page.locator("#tf-stage input").click()
        page.get_by_role("option", name=stage, exact=True).click()
        expect(section).to_contain_text("Preference tuning (dpo / kto)")
        for key in shown:
            expect(page.locator(f"#tf-{key}")).to_be_visible()
        for key in hidden:
            expect(page.locator(f"#tf-{key}")).to_be_hidden()
    _fill(page, "pref_beta", "0")
    expect(page.locator("#tf-pref_beta-error")).to_have_text(
        "⚠ pref_beta=0: Input should be greater than 0"
    )
    shot("kto")
    page.locator("#tf-stage input").click()
    page.get_by_role("option", name="rm", exact=True).click()
    expect(section).to_be_hidden()
