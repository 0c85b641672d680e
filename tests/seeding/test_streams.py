"""The stream tags are part of gdaload's results: their values are pinned here."""

from gdaload.seeding import Stream

PINNED = {
    "PLAN_SAMPLE": 0,
    "PLAN_LABELS": 1,
    "PROMPT_CHOICE": 1,
    "STRENGTH": 2,
    "VIEW_PICK": 3,
    "AUGMENT_DECISION": 0,
    "AUGMENT_SAMPLE": 1,
    "SPLIT_DRAW": 1,
    "TRAIN_ORDER": 0,
    "TRAIN_NOISE": 1,
    "TRAIN_LOADER": 2,
    "ADAPT_LORA_INIT": 3,
    "ADAPT_PRIOR_ORDER": 4,
    "ADAPT_PRIOR_IMAGES": 5,
    "DISTILL_NOISE": 6,
    "MULTIVIEW_AUTOENCODER": 0,
    "MULTIVIEW_DIFFUSION": 1,
    "TEXT2IMAGE_AUTOENCODER": 8,
    "TEXT2IMAGE_DIFFUSION": 9,
    "GENMIX": 0x676D6978,
    "AUGMENT": 0x67617567,
    "REPLACE_ROWS": 0x72706C63,
    "BENCH_AUGMENT": 0x6175676D,
    "BENCH_QUALITY": 0x7175616C,
    "BENCH_VIEW": 0x76696577,
    "BENCH_NOVEL": 0x6E6F766C,
    "BENCH_ORDER": 0x6F726472,
    "BENCH_PICTURE": 0x70696374,
    "PROTOCOL_TRAIN": 7,
    "PROTOCOL_MASK": 11,
    "PROTOCOL_QUALITY": 12,
    "PROTOCOL_NOVEL": 13,
    "PROTOCOL_IDEAL": 14,
    "PROTOCOL_TRAIN_VIEWS": 21,
    "PROTOCOL_TEST_VIEWS": 22,
}


def test_every_tag_keeps_its_value() -> None:
    assert {name: int(value) for name, value in Stream.__members__.items()} == PINNED


def test_four_byte_tags_spell_their_owner() -> None:
    assert Stream.GENMIX.to_bytes(4, "big") == b"gmix"
    assert Stream.AUGMENT.to_bytes(4, "big") == b"gaug"
    assert Stream.REPLACE_ROWS.to_bytes(4, "big") == b"rplc"
    assert Stream.BENCH_PICTURE.to_bytes(4, "big") == b"pict"
