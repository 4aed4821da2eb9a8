"""What a model of config `models` reads: a built-in extractor's embeddings or a named static model's (config
`static_models`, each resolved from the shared `static` settings), and which columns of them (`inputs`).

Pure config logic, without torch: the workflow resolves and checks these when it starts."""

from __future__ import annotations

from collections.abc import Collection, Mapping

BUILTIN_EXTRACTORS = {"landmarks": "face", "blendshapes": "face", "fer": "face", "logmel": "audio", "pdem": "audio",
                      "egemaps": "audio", "compare": "audio", "waveform": "audio"}
"""Each built-in extractor and the modality of the embeddings it writes."""
STATIC_MODALITY = "face"
"""Modality of a static model's embeddings (results/embeddings/face/<static model>/)."""
STATIC_MODEL_KEYS = ("backbone", "task")
"""What each static model sets itself; every key of config `static` is a shared default it may override."""
MODEL_INPUTS = ("embedding", "head", "both")
"""What a model reads of its embedding files: the embedding, a static model's head outputs (softmax
probabilities for expr, tanh valence and arousal for va), or both side by side."""
DEFAULT_INPUTS = "embedding"
"""`inputs` of a model that does not set it."""


class ConfigError(ValueError):
    """A config the workflow refuses; the message names the key."""


def static_model_settings(name: str, shared: Mapping, own: Mapping) -> dict:
    """The settings of static model `name`: config `static` (`shared`) with the model's own entry over it,
    a mapping (augmentation, init_checkpoint) merged key by key."""
    where = f"config static_models.{name}"
    missing = [key for key in STATIC_MODEL_KEYS if key not in own]
    if missing:
        raise ConfigError(f"{where}: sets no {' and no '.join(missing)} (each static model names its own)")
    unknown = sorted(set(own) - set(shared) - set(STATIC_MODEL_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; besides {list(STATIC_MODEL_KEYS)} it may override "
                          f"the shared static settings {sorted(shared)}")
    settings = dict(shared)
    for key, value in own.items():
        if isinstance(shared.get(key), Mapping):
            unknown = sorted(set(value) - set(shared[key]))
            if unknown:
                raise ConfigError(f"{where}.{key}: unknown keys {unknown} (static.{key} has {sorted(shared[key])})")
            value = dict(shared[key]) | dict(value)
        settings[key] = value
    return settings


def static_models(shared: Mapping, named: Mapping[str, Mapping]) -> dict[str, dict]:
    """Every named static model's settings (`static_model_settings`); a name that is also a built-in
    extractor's would share its embedding folder, and is refused."""
    taken = sorted(set(named) & set(BUILTIN_EXTRACTORS))
    if taken:
        raise ConfigError(f"config static_models: {taken} {'is' if len(taken) == 1 else 'are'} the name of a "
                          f"built-in extractor ({sorted(BUILTIN_EXTRACTORS)}); name the static model otherwise")
    return {name: static_model_settings(name, shared, own) for name, own in named.items()}


def model_inputs(spec: Mapping) -> str:
    """What the model with config `spec` reads of its embedding files (MODEL_INPUTS)."""
    return spec.get("inputs", DEFAULT_INPUTS)


def check_model_extractors(models: Mapping[str, Mapping], static_names: Collection[str]) -> None:
    """Refuse a model whose extractor is neither built in nor a static model, whose modality is not its
    extractor's, or that reads head outputs from an extractor without a head."""
    for name, spec in models.items():
        where, extractor = f"config models.{name}", spec["extractor"]
        if extractor in BUILTIN_EXTRACTORS:
            modality = BUILTIN_EXTRACTORS[extractor]
        elif extractor in static_names:
            modality = STATIC_MODALITY
        else:
            hint = (" (the single `static` extractor became named static models: add one to static_models and "
                    "give its name)") if extractor == "static" else ""
            raise ConfigError(f"{where}.extractor: '{extractor}' is neither a built-in extractor "
                              f"({sorted(BUILTIN_EXTRACTORS)}) nor a static model of static_models "
                              f"({sorted(static_names)}){hint}")
        if spec["modality"] != modality:
            raise ConfigError(f"{where}: extractor '{extractor}' writes {modality} embeddings, but the model's "
                              f"modality is {spec['modality']}")
        inputs = model_inputs(spec)
        if inputs != DEFAULT_INPUTS and extractor not in static_names:
            raise ConfigError(f"{where}.inputs: '{inputs}' reads a static model's head outputs, but extractor "
                              f"'{extractor}' has no head; use inputs: {DEFAULT_INPUTS}")
