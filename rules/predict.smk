rule predict:
    input:
        checkpoint="results/models/{model}/{task}/w{window}/checkpoint.pt",
        samples=lambda w: sample_set_file(w.model, w.task, w.split),
    output:
        "results/predictions/raw/{model}/{task}/w{window}/{split}.parquet",
    log:
        "results/logs/predict/{model}/{task}/w{window}/{split}.log",
    benchmark:
        "results/benchmarks/predict/{model}/{task}/w{window}/{split}.tsv"
    wildcard_constraints:
        model=alternation(EMBEDDING_MODELS),
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        modality=lambda w: MODELS[w.model]["modality"],
        device=config["device"],
    script:
        "../workflow/scripts/predict.py"


rule predict_end_to_end:
    input:
        unpack(pdem_release),
        unpack(lambda w: end_to_end_inputs(w.task, [w.split])),
        checkpoint="results/models/{model}/{task}/w{window}/checkpoint.pt",
    output:
        "results/predictions/raw/{model}/{task}/w{window}/{split}.parquet",
    log:
        "results/logs/predict_end_to_end/{model}/{task}/w{window}/{split}.log",
    benchmark:
        "results/benchmarks/predict_end_to_end/{model}/{task}/w{window}/{split}.tsv"
    wildcard_constraints:
        model=alternation(END_TO_END_MODELS),
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        samples=lambda w: split_samples(w.task, w.split),
        batch_size=config["end_to_end"]["batch_size"],
        weights={name: RESOURCES[key].to_dict() for name, key in PDEM_RESOURCES.items()},
        accept_unpinned=config["resources"]["accept_unpinned"],
        device=config["device"],
    script:
        "../workflow/scripts/predict_end_to_end.py"


rule select_window:
    input:
        metrics=lambda w: expand(
            "results/models/{{model}}/{{task}}/w{window}/metrics.json", window=window_tags(w.model)
        ),
        validation=lambda w: expand(
            "results/predictions/raw/{{model}}/{{task}}/w{window}/validation.parquet", window=window_tags(w.model)
        ),
        test=lambda w: expand(
            "results/predictions/raw/{{model}}/{{task}}/w{window}/test.parquet", window=window_tags(w.model)
        ),
    output:
        selection="results/models/{model}/{task}/selected.json",
        validation="results/predictions/raw/{model}/{task}/validation.parquet",
        test="results/predictions/raw/{model}/{task}/test.parquet",
    log:
        "results/logs/select_window/{model}/{task}.log",
    benchmark:
        "results/benchmarks/select_window/{model}/{task}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        windows=lambda w: window_tags(w.model),
    script:
        "../workflow/scripts/select_window.py"


rule smooth_predictions:
    input:
        predictions="results/predictions/raw/{model}/{task}/{split}.parquet",
        probes=lambda w: probes(w.task, [w.split]),
    output:
        "results/predictions/{model}/{task}/{split}.parquet",
    log:
        "results/logs/smooth_predictions/{model}/{task}/{split}.log",
    benchmark:
        "results/benchmarks/smooth_predictions/{model}/{task}/{split}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        samples=lambda w: split_samples(w.task, w.split),
        smoothing=lambda w: model_smoothing(w.model),
        max_gap_s=config["postprocess"]["max_gap_s"],
    script:
        "../workflow/scripts/smooth_predictions.py"
