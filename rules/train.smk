rule sample_set:
    input:
        embeddings=set_embeddings,
        augmented=set_augmented,
        probes=lambda w: probes(w.task, [w.split]),
        annotations=lambda w: annotations(w.task, w.split) if w.split in LABELLED_SPLITS else [],
    output:
        "results/sets/{modality}/{extractor}/{task}/{split}.json",
    log:
        "results/logs/sample_set/{modality}/{extractor}/{task}/{split}.log",
    benchmark:
        "results/benchmarks/sample_set/{modality}/{extractor}/{task}/{split}.tsv"
    localrule: True
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        samples=lambda w: split_samples(w.task, w.split),
    script:
        "../workflow/scripts/sample_set.py"


rule train:
    input:
        train=lambda w: sample_set_file(w.model, w.task, "train"),
        validation=lambda w: sample_set_file(w.model, w.task, "validation"),
    output:
        checkpoint="results/models/{model}/{task}/w{window}/checkpoint.pt",
        metrics="results/models/{model}/{task}/w{window}/metrics.json",
        history="results/models/{model}/{task}/w{window}/history.tsv",
    log:
        "results/logs/train/{model}/{task}/w{window}.log",
    benchmark:
        "results/benchmarks/train/{model}/{task}/w{window}.tsv"
    wildcard_constraints:
        model=alternation(EMBEDDING_MODELS),
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        corpus=str(CORPUS),
        model=lambda w: model_settings(w.model),
        family=lambda w: family_settings(w.model),
        rate_hz=config["embeddings"]["rate_hz"],
        expr_label_s=config["training"]["expr_label_s"],
        device=config["device"],
    script:
        "../workflow/scripts/train.py"


rule train_static:
    input:
        unpack(static_init_weights),
        videos=lambda w: [corpus_video(video_of(s)) for s in static_samples(w.static_model)],
        faces=lambda w: [f"results/faces/{s}.parquet" for s in static_samples(w.static_model)],
        probes=lambda w: [probe_of(video_of(s)) for s in static_samples(w.static_model)],
        annotations=lambda w: [a for split in STATIC_SPLITS for a in annotations(static_task(w.static_model), split)],
    output:
        checkpoint="results/static/{static_model}/checkpoint.pt",
        metrics="results/static/{static_model}/metrics.json",
        history="results/static/{static_model}/history.tsv",
    log:
        "results/logs/train_static/{static_model}.log",
    benchmark:
        "results/benchmarks/train_static/{static_model}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        static_samples=lambda w: static_samples(w.static_model),
        samples=lambda w: samples_by_split(static_task(w.static_model), STATIC_SPLITS),
        corpus=str(CORPUS),
        static=lambda w: static_settings(w.static_model),
        init_weights=lambda w: RESOURCES[static_imagenet_resource(w.static_model)].to_dict(),
        accept_unpinned=config["resources"]["accept_unpinned"],
        crop_margin_px=config["faces"]["crop_margin_px"],
        device=config["device"],
    script:
        "../workflow/scripts/train_static.py"


rule train_end_to_end:
    input:
        unpack(pdem_release),
        unpack(lambda w: end_to_end_inputs(w.task, LABELLED_SPLITS)),
    output:
        checkpoint="results/models/{model}/{task}/w{window}/checkpoint.pt",
        metrics="results/models/{model}/{task}/w{window}/metrics.json",
        history="results/models/{model}/{task}/w{window}/history.tsv",
    log:
        "results/logs/train_end_to_end/{model}/{task}/w{window}.log",
    benchmark:
        "results/benchmarks/train_end_to_end/{model}/{task}/w{window}.tsv"
    wildcard_constraints:
        model=alternation(END_TO_END_MODELS),
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        samples=lambda w: samples_by_split(w.task, LABELLED_SPLITS),
        corpus=str(CORPUS),
        model=lambda w: model_settings(w.model),
        family=lambda w: family_settings(w.model),
        rate_hz=config["embeddings"]["rate_hz"],
        step_s=config["embeddings"]["audio"]["step_s"],
        expr_label_s=config["training"]["expr_label_s"],
        weights={name: RESOURCES[key].to_dict() for name, key in PDEM_RESOURCES.items()},
        accept_unpinned=config["resources"]["accept_unpinned"],
        device=config["device"],
    script:
        "../workflow/scripts/train_end_to_end.py"
