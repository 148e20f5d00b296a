"""turboquant.parse_scheme and turboquant.kv_size: the CLI's --kv strings, field by field, and
the byte accounting of `tq kv-size --json` for presets, custom shapes, windows and protected
layers; bad strings raise ValueError with the C++ parser's message (the one the CLI prints).
"""

import pytest

import turboquant as tq

# `tq kv-size --kv` is repeatable (not comma-separated), so schemes with several options work too.
SCHEMES = ["tq3.5:protect=1/1,window=64", "fp16", "q8", "q8r", "q4", "q4r", "tq4", "tq3.5", "k4v3", "tq3", "tq2.5",
           "tq3.5:protect=1/1", "k4v3:kcodec=prod", "tq2:window=0", "tq4:normcorr=1",
           "q8:window=256", "tq4:seed=42", "tq3:rot=haar"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("model,context", [("smollm2-135m", 5000), ("llama-3.1-8b", 131072),
                                           ("qwen2.5-7b", 100)])
def test_kv_size_equals_tq_kv_size(tq_cli, scheme, model, context):
    ref = tq_cli.json("kv-size", "-m", model, "-c", context, "--kv", scheme)
    got = tq.kv_size(scheme, model, context=context)
    assert got.q_heads == tq.model_shape(model).q_heads
    got = vars(got)
    del got["q_heads"]  # recorded for the caller, not printed by the CLI
    assert got == ref


@pytest.mark.parametrize("scheme", ["tq4", "q4r", "k4v3:protect=2/3"])
def test_kv_size_custom_shape_and_overrides_equal_the_cli(tq_cli, scheme):
    ref = tq_cli.json("kv-size", "--layers", 40, "--kv-heads", 2, "--head-dim", 256, "-c", 9000,
                      "--kv", scheme)
    got = tq.kv_size(scheme, layers=40, kv_heads=2, head_dim=256, context=9000)
    assert vars(got) | {"q_heads": 0} == ref | {"q_heads": 0}
    assert got.model == "custom"
    ref = tq_cli.json("kv-size", "-m", "mistral-7b", "--layers", 12, "-c", 777, "--kv", scheme)
    got = tq.kv_size(tq.parse_scheme(scheme), "mistral-7b", layers=12, context=777)
    assert {k: v for k, v in vars(got).items() if k != "q_heads"} == ref


def test_kv_size_known_numbers():
    # DESIGN.md §2.8: tq4 at d = 128 stores 66 bytes per token and side; no window, 1 layer, 1 head.
    s = tq.kv_size("tq4:window=0", layers=1, kv_heads=1, head_dim=128, context=10)
    assert s.bytes == 2 * 10 * 66 and s.fp16_bytes == 2 * 10 * 256
    assert s.bits_per_value == 4.125 and s.ratio == pytest.approx(66 / 256)
    assert s.compression == pytest.approx(256 / 66)


def test_parse_scheme_fields():
    s = tq.parse_scheme("tq3.5:protect=1/1,window=64")
    assert s.name == "tq3.5:protect=1/1,window=64" and str(s) == s.name
    assert s.key == s.value == tq.KvSideSpec("turboquant", False, "mse", 3.5)
    assert (s.protect_first, s.protect_last, s.window, s.rotation) == (1, 1, 64, "hadamard")
    assert s.layer_is_protected(0, 30) and s.layer_is_protected(29, 30)
    assert not s.layer_is_protected(1, 30)

    s = tq.parse_scheme("K4V3:kcodec=prod,rot=haar,normcorr=1,seed=7")
    assert (s.key.bits, s.key.codec, s.value.bits, s.value.codec) == (4, "prod", 3, "mse")
    assert (s.rotation, s.norm_correction, s.seed, s.window) == ("haar", True, 7, 128)
    assert tq.parse_scheme(s.name) == s  # the canonical name parses back to the same scheme

    s = tq.parse_scheme("q8r")
    assert s.key == s.value == tq.KvSideSpec("q8", True, "mse", 8.0) and s.window == 0
    assert tq.parse_scheme("q4_0").name == "q4"
    fp16 = tq.parse_scheme("fp16")
    assert fp16.key.format == "fp16" and fp16.key.bits == 16 and fp16.seed == 0x5EED
    assert tq.scheme_presets()[:3] == ["fp16", "q8", "q8r"]
    for preset in tq.scheme_presets():
        assert tq.parse_scheme(preset).name == preset


def test_model_shapes():
    names = [m.name for m in tq.model_shapes()]
    assert "smollm2-135m" in names and "llama-3.1-8b" in names
    s = tq.model_shape("SmolLM2-135M")
    assert (s.layers, s.q_heads, s.kv_heads, s.head_dim) == (30, 9, 3, 64)
    with pytest.raises(ValueError, match="is not a known shape; expected one of smollm2-135m"):
        tq.model_shape("gpt-5")
    g = tq.model_shape("gemma3-270m")
    assert (g.layers, g.sliding_window, g.sliding_window_pattern) == (18, 512, 6)
    assert s.sliding_window == 0
    # 3 global layers of 32768 tokens and 15 sliding ones of 512, K+V fp16, 1 KV head of 256.
    size = tq.kv_size("fp16", "gemma3-270m", context=32768)
    assert size.bytes == (3 * 32768 + 15 * 512) * 2 * 256 * 2 == size.fp16_bytes


BAD_SCHEMES = {
    "zz": "kv scheme 'zz' is unknown; expected one of fp16",
    "tq4:foo=1": "kv scheme 'tq4:foo=1': unknown option 'foo'",
    "tq4:window": "option 'window' must be key=value",
    "q8:kcodec=prod": "option 'kcodec' applies to TurboQuant schemes only",
    "tq4:protect=1": "protect expects F/L",
    "tq4:kcodec=fast": "codec 'fast' is unknown",
    "tq4:rot=dct": "rotation kind 'dct' is unknown",
    "tq4:window=-3": "window",
    "tq9": "9",
    "tq3.3": "3.3",
}


@pytest.mark.parametrize("text", list(BAD_SCHEMES))
def test_bad_schemes_raise_value_error(text):
    with pytest.raises(ValueError, match=BAD_SCHEMES[text].replace("(", r"\(").replace(".", r"\.")):
        tq.parse_scheme(text)


@pytest.mark.parametrize("text", list(BAD_SCHEMES))
def test_bad_scheme_messages_are_the_clis(tq_cli, text):
    with pytest.raises(ValueError) as err:
        tq.parse_scheme(text)
    proc = tq_cli("kv-size", "-m", "smollm2-135m", "-c", 10, "--kv", text, check=False)
    assert proc.returncode != 0
    assert str(err.value) in proc.stderr


def test_bad_kv_size_arguments():
    with pytest.raises(ValueError, match="needs model=NAME or all of layers="):
        tq.kv_size("tq4", layers=4, kv_heads=2, context=10)
    with pytest.raises(ValueError, match="protect=20/20 names 40 layers, the model has 30"):
        tq.kv_size("tq4:protect=20/20", "smollm2-135m", context=10)
    with pytest.raises(ValueError, match="context must be >= 1"):
        tq.kv_size("tq4", "smollm2-135m", context=0)
    with pytest.raises(ValueError, match="layers must be in"):
        tq.kv_size("tq4", "smollm2-135m", layers=-1, context=10)
    with pytest.raises(TypeError, match="context must be an int"):
        tq.kv_size("tq4", "smollm2-135m", context=1.5)
    with pytest.raises(TypeError, match="scheme string"):
        tq.parse_scheme(4)
    with pytest.raises(ValueError, match="is not a known shape"):
        tq.kv_size("tq4", "nope", context=10)
    with pytest.raises(OverflowError):
        tq.kv_size("fp16", layers=2**31 - 1, kv_heads=2**31 - 1, head_dim=2**31 - 1,
                   context=2**62)
