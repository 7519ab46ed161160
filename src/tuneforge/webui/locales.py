"""Every word the web UI shows, in English and Chinese, in one table.

A config field's English hint is its description in `tuneforge.config.schema` where that
description already says why the field matters and what a typical value is, so the YAML
documentation and the form cannot drift apart; elsewhere the hint is written here. Messages
from the library (validation, data and model errors) stay in English, exactly as the CLI
prints them.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Mapping
from types import MappingProxyType

from tuneforge.config.schema import SECTIONS

LANGUAGES: Mapping[str, str] = MappingProxyType({"en": "English", "zh": "中文"})


def _described(key: str) -> str:
    """The schema's description of config key `key`."""
    for section in SECTIONS.values():
        if key in section.model_fields:
            return str(section.model_fields[key].description)
    raise KeyError(key)


_TEXTS: dict[str, dict[str, str]] = {
    # The page
    "app.title": {"en": "tuneforge", "zh": "tuneforge"},
    "app.intro": {
        "en": "## tuneforge\nFine-tune a language model on your own data, watch it learn, "
        "then talk to it.",
        "zh": "## tuneforge\n用你自己的数据微调语言模型，实时查看训练过程，然后与它对话。",
    },
    "app.language": {"en": "Language / 语言", "zh": "Language / 语言"},
    "tab.train": {"en": "Train", "zh": "训练"},
    "tab.evaluate": {"en": "Evaluate", "zh": "评估"},
    "tab.chat": {"en": "Chat", "zh": "对话"},
    "tab.export": {"en": "Export", "zh": "导出"},
    "app.password": {
        "en": "Enter the server's password (any user name).",
        "zh": "请输入服务器密码（用户名任意）。",
    },
    # Train tab: sections
    "section.model": {"en": "### Model", "zh": "### 模型"},
    "section.data": {"en": "### Data", "zh": "### 数据"},
    "section.training": {"en": "### Training", "zh": "### 训练参数"},
    "section.lora": {"en": "### LoRA", "zh": "### LoRA"},
    "section.preference": {
        "en": "### Preference tuning (dpo / kto)",
        "zh": "### 偏好训练（dpo / kto）",
    },
    "section.extra": {"en": "More settings (any config key)", "zh": "更多设置（任意配置项）"},
    "section.run": {"en": "### Run", "zh": "### 运行"},
    # Train tab: fields (label, hint)
    "field.model_name_or_path": {"en": "Model", "zh": "模型"},
    "hint.model_name_or_path": {
        "en": _described("model_name_or_path"),
        "zh": "内置别名、本地 Hugging Face 模型文件夹或 Hub ID；默认是内置的 "
        "SmolLM2-135M-Instruct。",
    },
    "field.stage": {"en": "Stage", "zh": "训练阶段"},
    "hint.stage": {
        "en": _described("stage"),
        "zh": "sft：有监督对话微调；pt：在纯文本上继续预训练；cls：文本分类（文本 -> 标签）；"
        "rm：在偏好对上训练奖励模型；dpo：在偏好对上做偏好训练（pref_loss 可选 DPO、IPO、"
        "ORPO、SimPO 等）；kto：在标记为好或坏的回答上做偏好训练。",
    },
    "field.finetuning_type": {"en": "Fine-tuning method", "zh": "微调方法"},
    "hint.finetuning_type": {
        "en": _described("finetuning_type"),
        "zh": "lora：只训练小型适配器（省内存，最常用）；full：训练全部权重；"
        "freeze：只训练最后几层。",
    },
    "field.quantization_bit": {"en": "Quantization (QLoRA)", "zh": "量化（QLoRA）"},
    "hint.quantization_bit": {
        "en": _described("quantization_bit"),
        "zh": "以 4 或 8 比特加载基础模型权重（bitsandbytes）并在其上训练 LoRA，"
        "显著省内存；留空 = 不量化。",
    },
    "field.template": {"en": "Chat template", "zh": "对话模板"},
    "hint.template": {
        "en": "How conversations become tokens; keep the tokenizer's own unless the "
        "model has none (a wrong template makes the model ramble).",
        "zh": "对话如何转换为 token；除非模型没有自带模板，否则保持分词器自带的模板"
        "（模板不对会让模型胡言乱语）。",
    },
    "field.rope_scaling": {"en": "RoPE scaling", "zh": "RoPE 缩放"},
    "hint.rope_scaling": {
        "en": _described("rope_scaling"),
        "zh": "当上下文长于模型训练时的长度时拉伸 RoPE；系数默认为 cutoff_len / "
        "模型上下文长度。通常保持关闭。",
    },
    "field.dataset_dir": {"en": "Dataset folder", "zh": "数据集文件夹"},
    "hint.dataset_dir": {
        "en": "Folder holding dataset_info.json and the data files it names.",
        "zh": "包含 dataset_info.json 及其所列数据文件的文件夹。",
    },
    "field.dataset": {"en": "Datasets", "zh": "数据集"},
    "hint.dataset": {
        "en": "Datasets registered in dataset_info.json; pick one or more.",
        "zh": "dataset_info.json 中登记的数据集，可选一个或多个。",
    },
    "field.cutoff_len": {"en": "Cutoff length", "zh": "截断长度"},
    "hint.cutoff_len": {
        "en": "Longest sample in tokens; longer ones are truncated. Memory grows "
        "with it; 512-2048 is typical.",
        "zh": "每个样本的最大 token 数，超出部分被截断。内存随之增长；常用 512-2048。",
    },
    "field.val_size": {"en": "Validation size", "zh": "验证集大小"},
    "hint.val_size": {
        "en": "Held-out share (0.1) or count (200) of samples: shows the validation "
        "loss, enables early stopping. 0 = none.",
        "zh": "留出的样本比例（0.1）或数量（200）：用于显示验证损失和提前停止；0 = 不留。",
    },
    "field.max_samples": {"en": "Max samples", "zh": "最大样本数"},
    "hint.max_samples": {
        "en": "Use at most this many samples per dataset, for a quick trial run; empty = all.",
        "zh": "每个数据集最多使用的样本数，适合快速试跑；留空 = 全部。",
    },
    "field.output_dir": {"en": "Output folder", "zh": "输出文件夹"},
    "hint.output_dir": {
        "en": "Where checkpoints, the log and the result go; one folder per run.",
        "zh": "检查点、日志和结果的保存位置；每次训练用一个文件夹。",
    },
    "field.learning_rate": {"en": "Learning rate", "zh": "学习率"},
    "hint.learning_rate": {
        "en": _described("learning_rate") + " Full fine-tuning: ~1e-5.",
        "zh": "峰值学习率；LoRA 常用 1e-4 到 5e-4，全量微调约 1e-5。",
    },
    "field.num_train_epochs": {"en": "Epochs", "zh": "训练轮数"},
    "hint.num_train_epochs": {
        "en": "Passes over the training data; 1-3 is typical, more risks memorising it.",
        "zh": "遍历训练数据的次数；常用 1-3，过多容易死记硬背训练数据。",
    },
    "field.max_steps": {"en": "Max steps", "zh": "最大步数"},
    "hint.max_steps": {"en": _described("max_steps"), "zh": "训练这么多步后停止（-1：按轮数）。"},
    "field.per_device_train_batch_size": {"en": "Batch size", "zh": "批大小"},
    "hint.per_device_train_batch_size": {
        "en": "Samples per step on each device; memory grows with it. 1-8 is typical.",
        "zh": "每个设备每步的样本数；内存随之增长。常用 1-8。",
    },
    "field.gradient_accumulation_steps": {"en": "Gradient accumulation", "zh": "梯度累积"},
    "hint.gradient_accumulation_steps": {
        "en": "Batches added up per optimizer step: a larger effective batch without more memory.",
        "zh": "每次优化器更新累积的批次数：不增加内存即可获得更大的有效批大小。",
    },
    "field.lr_scheduler_type": {"en": "LR schedule", "zh": "学习率调度"},
    "hint.lr_scheduler_type": {
        "en": "How the learning rate changes after warm-up; cosine is a safe default.",
        "zh": "预热之后学习率如何变化；cosine 是稳妥的默认选择。",
    },
    "field.precision": {"en": "Precision", "zh": "计算精度"},
    "hint.precision": {
        "en": "auto uses bf16 where the hardware runs it fast, else fp32; fp16 needs a CUDA GPU.",
        "zh": "auto：硬件支持时使用 bf16，否则 fp32；fp16 需要 CUDA GPU。",
    },
    "field.logging_steps": {"en": "Logging steps", "zh": "日志间隔"},
    "hint.logging_steps": {
        "en": "Log loss and learning rate every n steps; 1-10 gives a smooth curve.",
        "zh": "每 n 步记录一次损失和学习率；1-10 可得到平滑的曲线。",
    },
    "field.save_steps": {"en": "Save steps", "zh": "保存间隔"},
    "hint.save_steps": {
        "en": "Checkpoint every n steps: what Resume continues from after a crash.",
        "zh": "每 n 步保存一次检查点：崩溃后“继续训练”从这里接着跑。",
    },
    "field.eval_steps": {"en": "Validation steps", "zh": "验证间隔"},
    "hint.eval_steps": {
        "en": "Compute the validation loss every n steps; empty = the logging interval.",
        "zh": "每 n 步计算一次验证损失；留空 = 与日志间隔相同。",
    },
    "field.lora_rank": {"en": "LoRA rank", "zh": "LoRA 秩"},
    "hint.lora_rank": {
        "en": _described("lora_rank") + " Higher learns more, uses more memory.",
        "zh": "LoRA 的秩 r；常用 8-64。越大学得越多，内存也越多。",
    },
    "field.lora_alpha": {"en": "LoRA alpha", "zh": "LoRA alpha"},
    "hint.lora_alpha": {
        "en": "Scales the adapter's effect; empty = 2 x rank, which works well.",
        "zh": "缩放适配器的作用强度；留空 = 2 × 秩，通常效果很好。",
    },
    "field.lora_dropout": {"en": "LoRA dropout", "zh": "LoRA dropout"},
    "hint.lora_dropout": {
        "en": "Dropout on the adapter's input against overfitting small data; 0-0.1.",
        "zh": "适配器输入上的 dropout，防止在小数据上过拟合；常用 0-0.1。",
    },
    "field.lora_target": {"en": "LoRA target modules", "zh": "LoRA 目标模块"},
    "hint.lora_target": {
        "en": "all = every linear layer (best quality); or names such as "
        "q_proj,v_proj (less memory).",
        "zh": "all = 所有线性层（效果最好）；或填写模块名如 q_proj,v_proj（更省内存）。",
    },
    "field.use_rslora": {"en": "rsLoRA", "zh": "rsLoRA"},
    "hint.use_rslora": {
        "en": _described("use_rslora") + " Helps at high ranks.",
        "zh": "秩稳定的 LoRA 缩放（alpha / sqrt(r)），在较大的秩上更稳定。",
    },
    "field.use_dora": {"en": "DoRA", "zh": "DoRA"},
    "hint.use_dora": {
        "en": _described("use_dora") + " Often a little better, somewhat slower.",
        "zh": "权重分解的 LoRA（DoRA），效果常略好，速度稍慢。",
    },
    "field.pref_beta": {"en": "Beta", "zh": "Beta（β）"},
    "hint.pref_beta": {
        "en": _described("pref_beta"),
        "zh": "dpo/kto：策略模型可以偏离参考模型多远（越大越接近参考模型）；通常 0.1。"
        "对 ORPO 是赔率比项的权重。",
    },
    "field.pref_loss": {"en": "Preference loss", "zh": "偏好损失"},
    "hint.pref_loss": {
        "en": _described("pref_loss"),
        "zh": "dpo：sigmoid（DPO）、ipo、hinge、robust、orpo（不需要参考模型）、simpo"
        "（不需要参考模型，按长度归一化），或 trl 的其他 DPO 损失。",
    },
    "field.pref_ftx": {"en": "SFT loss weight", "zh": "SFT 损失权重"},
    "hint.pref_ftx": {
        "en": _described("pref_ftx") + " 0 = none.",
        "zh": "dpo：在被选回答上混入的 SFT 损失的权重；0 = 不混入。",
    },
    "field.simpo_gamma": {"en": "SimPO gamma", "zh": "SimPO gamma（γ）"},
    "hint.simpo_gamma": {
        "en": _described("simpo_gamma"),
        "zh": "pref_loss 为 simpo 时：目标奖励差值。",
    },
    "field.dpo_label_smoothing": {"en": "Label smoothing", "zh": "标签平滑"},
    "hint.dpo_label_smoothing": {
        "en": _described("dpo_label_smoothing") + " 0 = every label trusted.",
        "zh": "dpo：假定被标反的偏好标签所占比例（robust / cDPO）；0 = 全部可信。",
    },
    "field.kto_chosen_weight": {"en": "Weight of good answers", "zh": "好回答的权重"},
    "hint.kto_chosen_weight": {
        "en": _described("kto_chosen_weight"),
        "zh": "kto：好（期望的）回答上损失的权重。",
    },
    "field.kto_rejected_weight": {"en": "Weight of bad answers", "zh": "坏回答的权重"},
    "hint.kto_rejected_weight": {
        "en": _described("kto_rejected_weight"),
        "zh": "kto：坏（不期望的）回答上损失的权重。",
    },
    "field.ref_model": {"en": "Reference model", "zh": "参考模型"},
    "hint.ref_model": {
        "en": _described("ref_model"),
        "zh": "dpo/kto：参考模型；留空 = 策略模型的起点（使用 LoRA 时即同一份权重关闭新适配器，"
        "不占第二份内存）。",
    },
    "field.ref_model_adapters": {"en": "Reference model adapter", "zh": "参考模型的适配器"},
    "hint.ref_model_adapters": {
        "en": _described("ref_model_adapters"),
        "zh": "dpo/kto：加在参考模型（ref_model）上的 LoRA 适配器。",
    },
    "field.extra": {"en": "Other keys (YAML)", "zh": "其他配置项（YAML）"},
    "hint.extra": {
        "en": "Any other config key, one 'key: value' per line, e.g. early_stopping_steps: 3.",
        "zh": "任意其他配置项，每行一个 “key: value”，例如 early_stopping_steps: 3。",
    },
    "field.config_path": {"en": "Config file", "zh": "配置文件"},
    "hint.config_path": {
        "en": "A YAML file: Save writes the form to it, Load fills the form from it.",
        "zh": "YAML 文件：“保存”把表单写入其中，“读取”用它填充表单。",
    },
    # Choices
    "choice.quantization_bit.none": {"en": "off", "zh": "不量化"},
    "choice.template.none": {"en": "the tokenizer's own", "zh": "分词器自带"},
    "choice.rope_scaling.none": {"en": "off", "zh": "关闭"},
    "choice.precision.auto": {"en": "auto", "zh": "自动"},
    "choice.precision.fp32": {"en": "fp32", "zh": "fp32"},
    "choice.precision.bf16": {"en": "bf16", "zh": "bf16"},
    "choice.precision.fp16": {"en": "fp16", "zh": "fp16"},
    # Train tab: buttons and outputs
    "button.preview": {"en": "Preview command", "zh": "预览命令"},
    "button.plan": {"en": "Plan", "zh": "资源规划"},
    "button.start": {"en": "Start", "zh": "开始训练"},
    "button.stop": {"en": "Stop", "zh": "停止"},
    "button.resume": {"en": "Resume", "zh": "继续训练"},
    "button.save": {"en": "Save config", "zh": "保存配置"},
    "button.load": {"en": "Load config", "zh": "读取配置"},
    "button.refresh": {"en": "Refresh", "zh": "刷新"},
    "out.preview": {"en": "First samples", "zh": "前几条样本"},
    "out.yaml": {"en": "Equivalent YAML", "zh": "等效的 YAML 配置"},
    "out.command": {"en": "Command line", "zh": "命令行"},
    "out.plan": {"en": "Plan: memory and advice", "zh": "规划：内存估算与建议"},
    "out.plot": {"en": "Loss", "zh": "损失"},
    "out.log": {"en": "Last log lines", "zh": "最近的日志"},
    "series.loss": {"en": "training loss", "zh": "训练损失"},
    "series.eval_loss": {"en": "validation loss", "zh": "验证损失"},
    # Train tab: messages
    "msg.invalid": {
        "en": "Some fields need fixing (see the messages under them).",
        "zh": "部分字段需要修改（见字段下方的提示）。",
    },
    "msg.valid": {"en": "The config is valid.", "zh": "配置有效。"},
    "msg.started": {
        "en": "Training started in {path}; it keeps running if you close this tab.",
        "zh": "训练已在 {path} 开始；关闭此页面也不会中断训练。",
    },
    "msg.resumed": {
        "en": "Resuming the run in {path} from its last complete checkpoint.",
        "zh": "正在从 {path} 中最后一个完整的检查点继续训练。",
    },
    "msg.stopping": {
        "en": "Stopping: a checkpoint is saved after the current step.",
        "zh": "正在停止：当前步结束后会保存检查点。",
    },
    "msg.not_running": {"en": "No training job is running.", "zh": "当前没有正在运行的训练。"},
    "msg.saved": {"en": "Config saved to {path}.", "zh": "配置已保存到 {path}。"},
    "msg.loaded": {"en": "Config loaded from {path}.", "zh": "已从 {path} 读取配置。"},
    "msg.no_path": {"en": "Give the path of a YAML file first.", "zh": "请先填写 YAML 文件路径。"},
    "msg.no_samples": {"en": "No samples to show.", "zh": "没有可显示的样本。"},
    "state.idle": {"en": "No training job yet.", "zh": "尚无训练任务。"},
    "state.starting": {
        "en": "Starting: loading the model and preparing the data...",
        "zh": "正在启动：加载模型并准备数据……",
    },
    "state.running": {"en": "Training", "zh": "训练中"},
    "state.stopping": {"en": "Stopping: saving a checkpoint...", "zh": "正在停止：保存检查点……"},
    "state.finished": {
        "en": "Finished: the result is in {path}.",
        "zh": "已完成：结果保存在 {path}。",
    },
    "state.stopped": {
        "en": "Stopped; the last checkpoint is kept in {path}. Resume continues from it.",
        "zh": "已停止；最后的检查点保存在 {path}。点击“继续训练”可从这里接着跑。",
    },
    "state.failed": {
        "en": "Failed (exit code {code}); see the last log lines.",
        "zh": "训练失败（退出码 {code}）；请查看最近的日志。",
    },
    "progress.step": {"en": "step {step} of {total}", "zh": "第 {step} / {total} 步"},
    "progress.eta": {"en": "ETA {eta}", "zh": "预计剩余 {eta}"},
    "progress.estimating": {"en": "ETA: estimating", "zh": "预计剩余：估算中"},
    # Evaluate tab
    "field.run": {"en": "Run", "zh": "训练结果"},
    "hint.run": {
        "en": "A training output folder; its saved config names the model, template "
        "and the validation split.",
        "zh": "训练输出文件夹；其中保存的配置记录了模型、模板和验证集划分。",
    },
    "field.eval_dataset": {"en": "Test datasets", "zh": "测试数据集"},
    "hint.eval_dataset": {
        "en": "Datasets from the run's dataset_info.json to test on; empty = "
        "the validation split the run held out.",
        "zh": "用于测试的数据集（来自该训练的 dataset_info.json）；留空 = 训练时留出的验证集。",
    },
    "field.max_new_tokens": {"en": "Max new tokens", "zh": "最大生成长度"},
    "hint.max_new_tokens": {
        "en": "Longest answer in tokens; a lower limit is faster.",
        "zh": "回答的最大 token 数；限制越小越快。",
    },
    "field.per_device_eval_batch_size": {"en": "Batch size", "zh": "批大小"},
    "hint.per_device_eval_batch_size": {
        "en": "Prompts answered together; more is faster, uses more memory.",
        "zh": "同时回答的提示数；越大越快，也越占内存。",
    },
    "field.reward_model": {"en": "Reward model (optional)", "zh": "奖励模型（可选）"},
    "hint.reward_model": {
        "en": "A stage rm run's folder: it scores the base and the tuned model's answers, "
        "giving the tuned model's win rate; empty = no scoring.",
        "zh": "一个 rm 阶段训练结果的文件夹：用它为基础模型和微调后模型的回答打分，"
        "得到微调后模型的胜率；留空 = 不打分。",
    },
    "button.evaluate": {"en": "Evaluate", "zh": "开始评估"},
    "out.metrics": {"en": "Metrics", "zh": "指标"},
    "out.samples": {"en": "Sample answers", "zh": "回答示例"},
    "col.metric": {"en": "metric", "zh": "指标"},
    "col.delta": {"en": "change", "zh": "变化"},
    "col.prompt": {"en": "prompt", "zh": "提示"},
    "col.reference": {"en": "reference", "zh": "参考答案"},
    "col.base": {"en": "base", "zh": "基础模型"},
    "col.tuned": {"en": "tuned", "zh": "微调后"},
    "col.baseline": {"en": "TF-IDF baseline", "zh": "TF-IDF 基线"},
    "col.model": {"en": "model", "zh": "模型"},
    "out.report": {"en": "Report", "zh": "评估报告"},
    # Evaluate tab: preference metrics (dpo/kto: "pref", a reward model: "rm")
    "metric.pref.pairs": {"en": "held-out pairs", "zh": "测试偏好对数"},
    "metric.pref.accuracy": {
        "en": "chosen more likely than rejected (per token)",
        "zh": "被选回答比被拒回答更可能（按 token 平均）",
    },
    "metric.pref.accuracy_summed": {
        "en": "chosen more likely than rejected (whole answer)",
        "zh": "被选回答比被拒回答更可能（整段回答）",
    },
    "metric.pref.margin_per_token": {
        "en": "mean log-probability margin per token",
        "zh": "每 token 平均对数概率差",
    },
    "metric.pref.answer_words": {
        "en": "mean answer length (words)",
        "zh": "平均回答长度（词）",
    },
    "metric.pref.implicit_reward.accuracy": {
        "en": "implicit reward: chosen above rejected",
        "zh": "隐式奖励：被选回答高于被拒回答的比例",
    },
    "metric.pref.implicit_reward.margin": {
        "en": "implicit reward: mean margin",
        "zh": "隐式奖励：平均差值",
    },
    "metric.pref.win_rate": {
        "en": "win rate over base (reward model)",
        "zh": "相对基础模型的胜率（奖励模型打分）",
    },
    "metric.rm.pairs": {"en": "held-out pairs", "zh": "测试偏好对数"},
    "metric.rm.accuracy": {
        "en": "pairwise accuracy (chosen scored higher)",
        "zh": "成对准确率（被选回答得分更高）",
    },
    "metric.rm.margin": {"en": "mean reward margin", "zh": "平均奖励差值"},
    "metric.rm.chosen_reward": {"en": "mean reward, chosen", "zh": "被选回答的平均奖励"},
    "metric.rm.rejected_reward": {"en": "mean reward, rejected", "zh": "被拒回答的平均奖励"},
    "msg.pick_run": {"en": "Pick a run first.", "zh": "请先选择一个训练结果。"},
    "msg.evaluated": {
        "en": "Evaluated; metrics.json and the answers are in {path}.",
        "zh": "评估完成；metrics.json 和回答保存在 {path}。",
    },
    "msg.previous_eval": {
        "en": "The last evaluation of this run (in {path}).",
        "zh": "该训练结果最近一次的评估（位于 {path}）。",
    },
    # Chat tab
    "field.adapter": {"en": "Adapter or trained folder", "zh": "适配器或训练结果文件夹"},
    "hint.adapter": {
        "en": "A run's output folder (LoRA adapter or full model) or a merged "
        "export; empty = the base model above.",
        "zh": "训练输出文件夹（LoRA 适配器或完整模型）或合并导出的模型；留空 = "
        "使用上面的基础模型。",
    },
    "field.system": {"en": "System prompt", "zh": "系统提示词"},
    "hint.system": {
        "en": "Instructions the model sees before the conversation; empty = the "
        "one it was trained with.",
        "zh": "模型在对话前看到的指令；留空 = 训练时使用的系统提示词。",
    },
    "field.temperature": {"en": "Temperature", "zh": "温度"},
    "hint.temperature": {
        "en": "0 = always the most likely word (repeatable); 0.7 = varied answers.",
        "zh": "0 = 总是选最可能的词（结果可复现）；0.7 = 回答更多样。",
    },
    "field.top_p": {"en": "Top-p", "zh": "Top-p"},
    "hint.top_p": {
        "en": "With temperature above 0: sample only from the most likely words "
        "covering this share; 0.9 is typical.",
        "zh": "温度大于 0 时：只从累计概率达到该比例的词中采样；常用 0.9。",
    },
    "field.repetition_penalty": {"en": "Repetition penalty", "zh": "重复惩罚"},
    "hint.repetition_penalty": {
        "en": _described("repetition_penalty") + " 1.0-1.2 is typical.",
        "zh": "大于 1 时抑制重复；常用 1.0-1.2。",
    },
    "field.message": {"en": "Message", "zh": "消息"},
    "hint.message": {"en": "Press Enter to send.", "zh": "按回车发送。"},
    "button.load_model": {"en": "Load model", "zh": "加载模型"},
    "button.unload": {"en": "Unload", "zh": "卸载模型"},
    "button.send": {"en": "Send", "zh": "发送"},
    "button.clear": {"en": "Clear conversation", "zh": "清空对话"},
    "out.chat": {"en": "Conversation", "zh": "对话"},
    "msg.model_loaded": {"en": "Loaded {name}.", "zh": "已加载 {name}。"},
    "msg.model_unloaded": {"en": "No model loaded.", "zh": "未加载模型。"},
    "msg.load_first": {"en": "Load a model first.", "zh": "请先加载模型。"},
    "field.tools": {"en": "Tools (JSON)", "zh": "工具（JSON）"},
    "hint.tools": {
        "en": "A JSON list of function schemas, pasted or the path of a file "
        "(e.g. examples/data/tools_schema.json); empty = no tools.",
        "zh": "函数 schema 的 JSON 列表，可直接粘贴或填写文件路径"
        "（如 examples/data/tools_schema.json）；留空 = 不使用工具。",
    },
    "field.tool_result": {"en": "Tool result", "zh": "工具结果"},
    "hint.tool_result": {
        "en": "When the model calls a tool, type what the tool returned; the model goes on.",
        "zh": "模型调用工具时，在此填写工具的返回结果，模型会接着回答。",
    },
    "button.send_result": {"en": "Send tool result", "zh": "发送工具结果"},
    "out.tool_result": {"en": "Tool result:", "zh": "工具结果："},
    "msg.no_call": {
        "en": "The model has not called a tool: there is no call to answer.",
        "zh": "模型没有调用工具，没有需要回答的调用。",
    },
    "msg.bad_call": {
        "en": "(not read as a tool call: {error})",
        "zh": "（无法识别为工具调用：{error}）",
    },
    # Export tab
    "field.format": {"en": "Format", "zh": "格式"},
    "hint.format": {
        "en": "hf: a Hugging Face folder (transformers, vLLM); gguf: one file for "
        "llama.cpp and Ollama.",
        "zh": "hf：Hugging Face 文件夹（transformers、vLLM）；gguf：单个文件，"
        "用于 llama.cpp 和 Ollama。",
    },
    "field.quant": {"en": "GGUF weight type", "zh": "GGUF 权重类型"},
    "hint.quant": {
        "en": "f16 keeps quality at half the size of f32; q8_0 is half again, nearly as good; "
        "q5_k_m and q4_k_m (smaller still) need pip install 'tuneforge[gguf-quant]'.",
        "zh": "f16 体积为 f32 的一半且几乎无损；q8_0 再小一半，质量接近；"
        "q5_k_m 和 q4_k_m 更小，需要 pip install 'tuneforge[gguf-quant]'。",
    },
    "field.export_out": {"en": "Export to", "zh": "导出到"},
    "hint.export_out": {
        "en": "The folder (hf) or .gguf file to write.",
        "zh": "要写入的文件夹（hf）或 .gguf 文件。",
    },
    "field.overwrite": {"en": "Replace an existing export", "zh": "覆盖已有的导出"},
    "hint.overwrite": {
        "en": "Without it, an existing path is left alone.",
        "zh": "不勾选时不会覆盖已存在的路径。",
    },
    "button.export": {"en": "Merge and export", "zh": "合并并导出"},
    "out.export": {"en": "Result", "zh": "结果"},
    "msg.exported": {"en": "Exported to {path}.", "zh": "已导出到 {path}。"},
    "msg.export_mismatch": {
        "en": "The export in {path} does not behave like the model it came from (see the checks).",
        "zh": "{path} 中的导出结果与原模型表现不一致（见检查结果）。",
    },
    "progress.merging": {"en": "Merging and exporting", "zh": "正在合并并导出"},
    "progress.evaluating": {"en": "Generating answers", "zh": "正在生成回答"},
}

TEXTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {key: MappingProxyType(entry) for key, entry in _TEXTS.items()}
)


def text(key: str, lang: str) -> str:
    """The words for `key` in `lang`; a missing key is a bug the locale test catches."""
    return TEXTS[key][lang]


def default_language(environ: Mapping[str, str] | None = None) -> str:
    """``zh`` when the user's locale is Chinese, else ``en``."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        if environ.get(name):
            return "zh" if environ[name].lower().startswith("zh") else "en"
    language = locale.getlocale()[0] or ""
    return "zh" if language.lower().startswith("zh") else "en"
