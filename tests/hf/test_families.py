from tests.hf.family_contract import FamilyContract, tiny  # noqa: F401


class TestQwen2VL(FamilyContract):
    family = "qwen2_vl"


class TestQwen25VL(FamilyContract):
    family = "qwen2_5_vl"


class TestLlava(FamilyContract):
    family = "llava"


class TestLlavaNext(FamilyContract):
    family = "llava_next"
    sizes = ((56, 56), (40, 70), (28, 56))


class TestLlavaOnevision(FamilyContract):
    family = "llava_onevision"
    sizes = ((56, 56), (40, 70), (28, 56))


class TestGemma3(FamilyContract):
    family = "gemma3"
    sizes = ((56, 56), (40, 70), (28, 56))
