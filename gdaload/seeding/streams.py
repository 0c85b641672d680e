"""The registry of stream tags: which integer keys a random stream, and whose it is.

Every random draw in gdaload comes from ``derive_seed(*keys)`` or ``derive_rng(*keys)``.
The keys start with the owner's seed and a tag from :class:`Stream`, so two components
that derive from the same user seed never share a stream. Tags are scoped by what
precedes them: a tag only has to differ from the tags used after the same prefix, which
is why several members share a value (they are aliases in Python's ``IntEnum`` sense,
and each is still written by name where it is used).

The values are part of gdaload's results: changing one changes every sample, order or
split drawn from it. Components that derive from the user's seed directly use 32-bit
tags spelled from four ASCII bytes ("gmix", "gaug", ...) so they stay apart from the
small tags of the seed plan.

Example:
    >>> from gdaload.seeding import Stream, derive_seed
    >>> derive_seed(0, Stream.PLAN_SAMPLE, 1, 5) == derive_seed(0, 0, 1, 5)
    True
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Stream"]


class Stream(IntEnum):
    """Stream tags, grouped by the key they follow (see the module docstring).

    Example:
        >>> int(Stream.PLAN_LABELS), Stream.GENMIX.to_bytes(4, "big")
        (1, b'gmix')
    """

    # After a SeedPlan's base seed: the per-sample seeds and the order of labels.
    PLAN_SAMPLE = 0
    PLAN_LABELS = 1

    # After a sample's own seed: the generator's per-sample choices.
    PROMPT_CHOICE = 1
    """Which of a class's prompts a text-to-image sample uses."""
    STRENGTH = 2
    """The SDEdit strength drawn from a range for one sample."""
    VIEW_PICK = 3
    """Which unobserved view a multi-view generator keeps for one sample."""

    # After GenerativeAugment's per-image key: replace or not, and the variation's seed.
    AUGMENT_DECISION = 0
    AUGMENT_SAMPLE = 1

    # After a data seed: the draw of a few-shot training split.
    SPLIT_DRAW = 1

    # After a generator-training seed.
    TRAIN_ORDER = 0
    """Order of the training images in each epoch (class-conditional training and
    adaptation of a pretrained model)."""
    TRAIN_NOISE = 1
    """Noise and timesteps of one training step (class-conditional training and
    adaptation of a pretrained model)."""
    TRAIN_LOADER = 2
    """The training loader's own draws in an epoch (class-conditional training); also
    the order of the real images in the quickstart and ``gdaload evaluate``."""
    ADAPT_LORA_INIT = 3
    """Initial weights of the LoRA layers when adapting a pretrained model."""
    ADAPT_PRIOR_ORDER = 4
    """Order of the prior-preservation images in each epoch (LoRA adaptation)."""
    ADAPT_PRIOR_IMAGES = 5
    """Seeds of the prior-preservation images the base model generates (LoRA adaptation)."""
    DISTILL_NOISE = 6
    """Noise and solver timesteps of one step of consistency distillation."""
    MULTIVIEW_AUTOENCODER = 0
    """The view autoencoder's stage of multi-view training."""
    MULTIVIEW_DIFFUSION = 1
    """The denoiser's stage of multi-view training."""
    TEXT2IMAGE_AUTOENCODER = 8
    """The VAE's stage of text-to-image pretraining (its weights and batches)."""
    TEXT2IMAGE_DIFFUSION = 9
    """The denoiser's stage of text-to-image pretraining (weights, batches, noise, captions)."""

    # After a user's seed: components that own a stream of their own ("gmix", "gaug").
    GENMIX = 0x676D6978
    AUGMENT = 0x67617567
    REPLACE_ROWS = 0x72706C63
    """Which real rows of a batch synthetic samples replace (``mode="replace"``, "rplc")."""

    # After a benchmark seed: the evaluation harness's own draws.
    BENCH_AUGMENT = 0x6175676D
    """Classic augmentation of the real images ("augm")."""
    BENCH_QUALITY = 0x7175616C
    """Samples drawn for the quality metrics ("qual")."""
    BENCH_VIEW = 0x76696577
    """The view shown of each object ("view")."""
    BENCH_NOVEL = 0x6E6F766C
    """Seeds of generated novel views ("novl")."""
    BENCH_ORDER = 0x6F726472
    """Order of the single-view training images ("ordr")."""
    BENCH_PICTURE = 0x70696374
    """Seeds of the views drawn in the report's picture ("pict")."""

    # After a seed of the multi-view protocol benchmark (benchmarks/multiview_protocol.py).
    PROTOCOL_TRAIN = 7
    """Batches of the protocol's classifier training."""
    PROTOCOL_MASK = 11
    """Which views each object observes in the generation-quality table."""
    PROTOCOL_QUALITY = 12
    """Seeds of the views generated for the generation-quality table."""
    PROTOCOL_NOVEL = 13
    """Seeds of the novel views added to the classifier's training set."""
    PROTOCOL_IDEAL = 14
    """The lookalike class an ideal generator draws for each object."""
    PROTOCOL_TRAIN_VIEWS = 21
    """Observed view of each training object (after the data seed)."""
    PROTOCOL_TEST_VIEWS = 22
    """Observed view of each test object (after the data seed)."""
