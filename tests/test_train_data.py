"""Training data: config loading, renderings, the encoder-output cache, packing, the mixture, bad audio."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from audior1.config import ConfigError
from audior1.data.manifest import write_manifest
from audior1.train.config import SFTConfig, Source, load_config
from audior1.train.data import (AudioStore, BatchBuilder, DataError, MixtureSampler, build_examples, collate,
                                load_items, render, user_message)
from audior1.train.policy import Policy


@pytest.fixture(scope="module")
def parts(assets):
    from audior1.checkpoint import load_model
    from audior1.processor import Processor

    model = load_model(assets / "tiny")
    return model, Processor.from_pretrained(assets / "tiny")


# ---- config ----------------------------------------------------------------------------------------------

def test_unknown_keys_fail_listing_valid_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: m\ndata: [{manifest: x.jsonl}]\nlearning_rate: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) learning_rate; valid keys: model, out_dir, data"):
        load_config(SFTConfig, f)
    f.write_text("model: m\ndata: [{manifest: x.jsonl, wieght: 2}]\n")
    with pytest.raises(ConfigError, match=r"data\.0: unknown key\(s\) wieght; valid keys: manifest, kind, weight"):
        load_config(SFTConfig, f)
    f.write_text("model: m\ndata: [{manifest: x.jsonl}]\n")
    with pytest.raises(ConfigError, match=r"optim: unknown key\(s\) lrr; valid keys: lr"):
        load_config(SFTConfig, f, ["optim.lrr=1"])


def test_overrides_and_type_conversion(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: m\ndata: [{manifest: a.jsonl}, {manifest: b.jsonl, kind: caption}]\noptim: {lr: 1e-3}\n")
    cfg = load_config(SFTConfig, f, ["optim.warmup_steps=5", "data.1.weight=0.25", "packing=false",
                                     "feature_cache=null", "trainable=[adapter]"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML reads "1e-3" as a string
    assert cfg.optim.warmup_steps == 5 and cfg.data[1].weight == 0.25 and cfg.data[1].kind == "caption"
    assert cfg.packing is False and cfg.feature_cache is None and cfg.trainable == ["adapter"]
    with pytest.raises(ConfigError, match="max_steps: expected an integer"):
        load_config(SFTConfig, f, ["max_steps=lots"])
    with pytest.raises(ConfigError, match="kind 'dialogue' is not one of"):
        load_config(SFTConfig, f, ["data.0.kind=dialogue"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "missing.yaml")


# ---- renderings and tokens -------------------------------------------------------------------------------

def test_example_prompt_is_exactly_the_engine_prompt(assets, parts):
    model, processor = parts
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))
    store = AudioStore(processor, None)
    store.prepare([p for it in items for p in it["audio"]])
    for kind in ("direct", "caption", "text_cot", "audio_cot", "surrogate"):
        ex = build_examples(items[:2], kind, processor.tokenizer, store, max_len=None)
        for e in ex:
            text, paths, reasoning, answer = render(e.item, kind)
            engine_prompt = processor.encode(user_message(text, [{"type": "audio", "audio": p} for p in paths]))
            assert e.input_ids[: e.n_prompt] == engine_prompt.input_ids
            tail = processor.tokenizer.decode(e.input_ids[e.n_prompt:])
            assert tail.endswith(f"</think>\n{answer}<|EOT|>")
            assert (reasoning == "") == tail.startswith("\n</think>")


def test_cached_encoder_outputs_give_the_inference_embeddings(assets, parts, tmp_path):
    model, processor = parts
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))[:5]
    store = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
    store.prepare([p for it in items for p in it["audio"]])
    clips = [store.clips[p] for it in items for p in it["audio"]]
    from audior1.processor import collate_mels
    from audior1.train.policy import audio_embeds

    with torch.no_grad():
        cached = audio_embeds(model, **store.batch_audio(clips))
        feats = [processor.encode(user_message("q", [{"type": "audio", "audio": c.path}])).audio[0] for c in clips]
        mels, lens, frames = collate_mels(feats)
        reference = model.audio_embeddings(mels, lens, frames)
    assert cached.shape == reference.shape
    assert torch.allclose(cached, reference, atol=1e-5)


def test_feature_cache_is_reused_and_keyed_by_encoder_weights(assets, parts, tmp_path):
    model, processor = parts
    paths = [p for it in load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl"))) for p in it["audio"]]
    first = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
    first.prepare(paths)
    assert (first.encoded, first.reused) == (len(paths), 0)
    second = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
    second.prepare(paths)
    assert (second.encoded, second.reused) == (0, len(paths))
    # the same audio under another name is the same content: reused
    copy = tmp_path / "copy.wav"
    shutil.copy(paths[0], copy)
    second.prepare([str(copy)])
    assert second.reused == len(paths) + 1
    with torch.no_grad():
        model.encoder.after_norm.bias.add_(0.1)
    try:
        third = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
        third.prepare(paths)
        assert third.encoded == len(paths) and third.cache_dir != first.cache_dir
    finally:
        with torch.no_grad():
            model.encoder.after_norm.bias.sub_(0.1)


def test_store_reads_the_cache_after_releasing_its_encoder(assets, parts, tmp_path):
    model, processor = parts
    paths = [p for it in load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))[:3]
             for p in it["audio"]]
    store = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
    store.prepare(paths)
    clips = [store.clips[p] for p in paths]
    before = store.batch_audio(clips)
    assert store.release_encoder() == sum(t.numel() * 4 for t in model.encoder.state_dict().values())
    fresh = AudioStore(processor, tmp_path / "cache", encoder=model.encoder, memory_bytes=0)  # reads files
    fresh.prepare(paths)
    fresh.release_encoder()
    after = fresh.batch_audio([fresh.clips[p] for p in paths])
    assert all(torch.equal(a, b) for a, b in zip(before.values(), after.values()) if torch.is_tensor(a))
    for f in fresh.cache_dir.rglob("*.safetensors"):
        f.unlink()
    with pytest.raises(DataError, match="encoder outputs are missing from the feature cache"):
        fresh.batch_audio([fresh.clips[paths[0]]])


def test_packed_rows_give_the_same_logprobs_as_separate_examples(assets, parts, tmp_path):
    model, processor = parts
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))
    store = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
    store.prepare([p for it in items for p in it["audio"]])
    ex = build_examples(items[:3], "direct", processor.tokenizer, store, max_len=None)
    ex += build_examples(items[3:5], "text_cot", processor.tokenizer, store, max_len=None)
    policy = Policy(model)
    with torch.no_grad():
        packed = collate([ex[:3], ex[3:]], store, processor.tokenizer, packed=True)
        lp, _ = policy(**packed.inputs())
        alone = [policy(**collate([[e]], store, processor.tokenizer, packed=False).inputs())[0][0] for e in ex]
        # uncached (log-mels through the encoder) agrees too
        nocache = AudioStore(processor, None)
        nocache.prepare([c.path for e in ex for c in e.clips])
        lp2, _ = policy(**collate([ex[:3], ex[3:]], nocache, processor.tokenizer, packed=True).inputs())
    offsets = [0, len(ex[0]), len(ex[0]) + len(ex[1]), 0, len(ex[3])]
    rows = [0, 0, 0, 1, 1]
    for e, row, off, ref in zip(ex, rows, offsets, alone):
        got = lp[row, off : off + len(e)]
        assert torch.allclose(got[e.n_prompt:], ref[e.n_prompt:], atol=1e-5)
        assert torch.allclose(lp2[row, off : off + len(e)][e.n_prompt:], ref[e.n_prompt:], atol=1e-5)
    assert packed.n_targets == sum(e.n_target for e in ex)
    assert int((packed.labels != -100).sum()) == packed.n_targets


# ---- mixture and batches -----------------------------------------------------------------------------------

def test_mixture_is_seeded_weighted_and_resumable():
    a = MixtureSampler([5, 7], [3.0, 1.0], seed=1)
    draws = [a.next() for _ in range(4000)]
    share = Counter(s for s, _ in draws)[0] / len(draws)
    assert 0.72 < share < 0.78
    # every epoch of a source is a permutation
    first_epoch = [i for s, i in draws if s == 1][:7]
    assert sorted(first_epoch) == list(range(7))
    b = MixtureSampler([5, 7], [3.0, 1.0], seed=1)
    for _ in range(1234):
        b.next()
    c = MixtureSampler([5, 7], [3.0, 1.0], seed=1)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert [c.next() for _ in range(500)] == draws[1234:1734]
    assert [MixtureSampler([5, 7], [3.0, 1.0], seed=2).next() for _ in range(20)] != draws[:20]


def test_batch_builder_packs_rows_and_resumes_with_its_carry():
    from audior1.train.data import Example

    src = [[Example(list(range(n)), 1, []) for n in (30, 50, 70, 90)]]
    b = BatchBuilder(src, [1.0], seed=0, rows=2, row_len=128, packing=True)
    batches = [b.next_batch() for _ in range(3)]
    for batch in batches:
        assert len(batch) == 2 and all(sum(len(e) for e in row) <= 128 for row in batch)
    b2 = BatchBuilder(src, [1.0], seed=0, rows=2, row_len=128, packing=True)
    b2.next_batch()
    state = json.loads(json.dumps(b2.state_dict()))
    b3 = BatchBuilder(src, [1.0], seed=0, rows=2, row_len=128, packing=True)
    b3.load_state_dict(state)
    assert [[[len(e) for e in row] for row in b3.next_batch()] for _ in range(2)] == \
        [[[len(e) for e in row] for row in batch] for batch in batches[1:]]
    unpacked = BatchBuilder(src, [1.0], seed=0, rows=3, row_len=128, packing=False).next_batch()
    assert [len(row) for row in unpacked] == [1, 1, 1]


# ---- bad input ------------------------------------------------------------------------------------------

def test_missing_and_corrupt_audio_are_skipped_and_counted_or_fail_with_strict(assets, parts, tmp_path):
    model, processor = parts
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    items[0] = {**items[0], "audio": [str(tmp_path / "missing.wav")]}
    items[1] = {**items[1], "audio": [str(corrupt)]}
    store = AudioStore(processor, tmp_path / "cache", encoder=model.encoder)
    store.prepare([p for it in items for p in it["audio"]])
    assert store.skipped == Counter({"missing audio": 1, "corrupt audio": 1})
    skipped = Counter()
    ex = build_examples(items, "direct", processor.tokenizer, store, max_len=None, skipped=skipped)
    assert len(ex) == len(items) - 2 and skipped["bad audio"] == 2
    assert "skipped 1 corrupt audio, 1 missing audio" in store.summary()
    strict = AudioStore(processor, tmp_path / "cache", encoder=model.encoder, strict=True)
    with pytest.raises(DataError, match="corrupt.wav"):
        strict.prepare([str(corrupt)])
    with pytest.raises(DataError, match="missing.wav: audio file not found"):
        strict.prepare([str(tmp_path / "missing.wav")])


def test_items_lacking_a_rendering_and_overlong_examples_are_counted(assets, parts):
    model, processor = parts
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))
    store = AudioStore(processor, None)
    store.prepare([p for it in items for p in it["audio"]])
    skipped = Counter()
    no_caption = [{**items[0], "caption": None}] + items[1:3]
    ex = build_examples(no_caption, "caption", processor.tokenizer, store, max_len=None, skipped=skipped)
    assert len(ex) == 2 and skipped["no caption"] == 1
    ex = build_examples(items[:3], "direct", processor.tokenizer, store, max_len=10, skipped=skipped)
    assert ex == [] and skipped["longer than max_seq_len"] == 3


def test_source_filters(assets):
    path = str(assets / "synth" / "synth-train.jsonl")
    assert {it["task"] for it in load_items(Source(manifest=path, tasks=["count_events"]))} == {"count_events"}
    qt = load_items(Source(manifest=path, exclude_question_types=["count_numeric"]))
    assert all(it["question_type"] != "count_numeric" for it in qt)
    assert len(load_items(Source(manifest=path, limit=3))) == 3
    easy = load_items(Source(manifest=path, difficulties=["easy"]))  # a curriculum's first stage
    assert easy and {it["difficulty"] for it in easy} == {"easy"}
    both = load_items(Source(manifest=path, difficulties=["easy", "hard"]))
    assert {it["difficulty"] for it in both} <= {"easy", "hard"} and len(both) > len(easy)
    with pytest.raises(DataError, match=r"difficulties \['hardest'\] are not among easy, medium, hard"):
        load_items(Source(manifest=path, difficulties=["hardest"]))


def test_no_think_prompt_makes_the_empty_think_block_prompt_not_target(assets, parts):
    """A direct answer trained as no-think prompts are rendered: the same tokens up to the answer, but the
    empty think block is prompt, so thinking-mode prompts are left to the reasoning kinds."""
    from audior1.chat import NO_THINK_PREFILL

    model, processor = parts
    tok = processor.tokenizer
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))[:2]
    store = AudioStore(processor, None)
    store.prepare([p for it in items for p in it["audio"]])
    plain = build_examples(items, "direct", tok, store, max_len=None)
    masked = build_examples(items, "direct", tok, store, max_len=None, no_think_prompt=True)
    for a, b, it in zip(plain, masked, items):
        assert tok.decode(b.input_ids[b.n_prompt:]).startswith(it["answer"])  # the answer is all it learns
        assert tok.decode(b.input_ids[:b.n_prompt]).endswith(NO_THINK_PREFILL)
        assert b.n_target < a.n_target
    # reasoning kinds are untouched
    cot = build_examples(items, "audio_cot", tok, store, max_len=None)
    cot_masked = build_examples(items, "audio_cot", tok, store, max_len=None, no_think_prompt=True)
    assert [e.input_ids for e in cot] == [e.input_ids for e in cot_masked]


def test_surrogate_rendering_pairs_the_chain_with_its_own_answer(assets):
    """`surrogate` (an ablation): the audio question, the surrogate chain, and the answer that chain reaches,
    which differs from the item's on traps and wherever the chain's guess missed."""
    from audior1.train.config import SFT_KINDS
    assert "surrogate" in SFT_KINDS
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))
    for it in items:
        text, paths, reasoning, answer = render(it, "surrogate")
        assert (text, paths) == render(it, "audio_cot")[:2]
        assert reasoning == it["surrogate_cot"] and answer == it["surrogate_answer"]
        assert reasoning.endswith(f"pick the answer {answer}.")  # coherent: the chain ends where the answer is
    assert any(it["surrogate_answer"] != it["answer"] for it in items)
    with pytest.raises(KeyError, match="surrogate_answer"):
        render({**items[0], "surrogate_answer": None}, "surrogate")
    cfg = SFTConfig(model="ckpt", data=[Source(manifest="m.jsonl", kind="surrogate")]).validate()
    assert cfg.data[0].kind == "surrogate"


def test_question_type_filters_key_on_task_and_question_type(assets, tmp_path):
    """Question types are named within a family: `task:question_type` picks one family's; a plain question
    type works where one family has it, and one that several share is refused, naming them."""
    items = load_items(Source(manifest=str(assets / "synth" / "synth-train.jsonl")))
    # make count_mc shared, as it is in the suite (count_events, word_count, trap_count)
    shared = [{**it, "task": "word_count"} if it["task"] == "pitch_compare" else it for it in items]
    shared = [{**it, "question_type": "count_mc"} if it["task"] == "word_count" else it for it in shared]
    path = str(write_manifest(tmp_path / "m.jsonl", shared))
    counts = Counter((it["task"], it["question_type"]) for it in shared)
    got = load_items(Source(manifest=path, question_types=["count_events:count_mc"]))
    assert {(it["task"], it["question_type"]) for it in got} == {("count_events", "count_mc")}
    assert len(got) == counts[("count_events", "count_mc")]
    held = load_items(Source(manifest=path, exclude_question_types=["word_count:count_mc"]))
    assert {it["task"] for it in held} == {"count_events"}
    assert len(held) == len(shared) - counts[("word_count", "count_mc")]
    plain = load_items(Source(manifest=path, question_types=["count_numeric"]))  # only count_events has it
    for typo in ("count_mcq", "count_events:count_mcq", "pitch:count_mc"):  # a typo never silently holds nothing out
        with pytest.raises(DataError, match="names no|is not one of"):
            load_items(Source(manifest=path, exclude_question_types=[typo]))
    assert {(it["task"], it["question_type"]) for it in plain} == {("count_events", "count_numeric")}
    for field in ("question_types", "exclude_question_types"):
        with pytest.raises(DataError, match=r"'count_mc' is ambiguous: the tasks count_events, word_count .*"
                                            r"count_events:count_mc"):
            load_items(Source(manifest=path, **{field: ["count_mc"]}))
    # unambiguous once the tasks filter keeps one family
    one = load_items(Source(manifest=path, tasks=["word_count"], question_types=["count_mc"]))
    assert len(one) == counts[("word_count", "count_mc")]
    with pytest.raises(ConfigError, match="not a question type or task:question_type"):
        SFTConfig(model="ckpt", data=[Source(manifest=path, question_types=["count_events:"])]).validate()


def test_example_configs_load():
    from audior1.train.config import RLConfig

    from audior1.mgrd import reproduce
    from audior1.mgrd.config import MGRDConfig

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        if path.name.startswith("reproduce"):
            reproduce.load(path)
            continue
        cls = MGRDConfig if path.name.startswith("mgrd") else RLConfig if path.name.startswith("rl") else SFTConfig
        load_config(cls, path)


def test_memory_estimate_shapes():
    from audior1.train.memory import estimate

    r8, r16 = estimate("step-audio-r1", 8), estimate("step-audio-r1", 16)
    assert round(r8["parameters"] / 1e9, 2) == 33.49
    assert r16["total_per_gpu_gb"] < r8["total_per_gpu_gb"]
    assert estimate("step-audio-r1", 8, algo="ppo")["total_per_gpu_gb"] > r8["total_per_gpu_gb"]
    grpo, grpo_kl = estimate("step-audio-r1", 8, algo="grpo"), estimate("step-audio-r1", 8, algo="grpo", kl=True)
    assert grpo_kl["per_gpu_gb"]["kl_reference_sharded_bf16"] == pytest.approx(2 * 33.49e9 / 8 / 1024**3, abs=0.01)
    assert grpo_kl["total_per_gpu_gb"] == pytest.approx(
        grpo["total_per_gpu_gb"] + grpo_kl["per_gpu_gb"]["kl_reference_sharded_bf16"], abs=0.11)
    with pytest.raises(ValueError, match="only RL"):
        estimate("step-audio-r1", 8, kl=True)


def test_memory_estimate_of_loading():
    """Sharded loading: each process allocates 1/N of the fp32 model plus one tensor's rows; before, all of it."""
    from audior1.train.memory import estimate

    r = estimate("step-audio-r1", 8)
    ld = r["loading_gb"]
    assert ld["shards_fp32"] == r["per_gpu_gb"]["params_fp32_sharded"]
    assert ld["before_whole_model_fp32"] == pytest.approx(8 * ld["shards_fp32"], rel=1e-3)
    assert ld["largest_rows_device_fp32"] == pytest.approx(2 * ld["largest_rows_host_bf16"], abs=0.011)
    assert ld["largest_rows_device_fp32"] < 0.5
    assert r["not_in_total_gb"]["generation_copy_bf16"] == pytest.approx(ld["before_whole_model_fp32"] / 2, abs=0.01)


def test_saving_a_training_checkpoint_leaves_the_live_config_alone(assets, tmp_path):
    import audior1
    from audior1.chat import ChatTokenizer
    from audior1.train import state
    from audior1.train.distributed import Dist

    model = audior1.load_model(assets / "tiny", dtype="float32")
    model.config.torch_dtype = "bfloat16"  # as config.json said; the weights are float32 now
    opt = torch.optim.AdamW(model.parameters())
    path = state.save(tmp_path, 1, Dist(), model=model, tokenizer=ChatTokenizer.from_dir(assets / "tiny"),
                      optimizers={"policy": (model, opt)}, trainer_state={"step": 1})
    assert model.config.torch_dtype == "bfloat16"
    assert json.loads((path / "config.json").read_text())["text_config"]["torch_dtype"] == "float32"
