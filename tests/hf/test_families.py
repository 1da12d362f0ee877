from tests.hf.family_contract import FamilyContract, tiny  # noqa: F401


class TestQwen2VL(FamilyContract):
    family = "qwen2_vl"


class TestQwen25VL(FamilyContract):
    family = "qwen2_5_vl"


class TestQwen3VL(FamilyContract):
    family = "qwen3_vl"


class TestQwen3VLMoe(FamilyContract):
    family = "qwen3_vl_moe"


class TestLlava(FamilyContract):
    family = "llava"


class TestLlavaNext(FamilyContract):
    family = "llava_next"
    sizes = ((56, 56), (40, 70), (28, 56))


class TestLlavaOnevision(FamilyContract):
    family = "llava_onevision"
    sizes = ((112, 84), (40, 70), (28, 56))  # the first has 12 tiles: downsampled rows
    # at seed 0 the tiny SigLIP's features share one dominant direction, so cosine ranks
    # them the same for any prompt (two prompts, one mask); seed 1 is a typical draw
    seed = 1


class TestGemma3(FamilyContract):
    family = "gemma3"
    sizes = ((56, 56), (40, 70), (28, 56))


class TestInternVL(FamilyContract):
    family = "internvl"
    sizes = ((112, 112), (112, 224), (224, 112))  # 1 tile; 2 tiles + thumbnail; the same turned
