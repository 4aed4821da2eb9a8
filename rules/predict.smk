rule predict:
    input:
        checkpoint="results/models/{model}/{task}/checkpoint.pt",
        embeddings=lambda w: [embedding_path(w.model, v) for v in split_videos(w.task, w.split)],
    output:
        "results/predictions/raw/{model}/{task}/{split}.parquet",
    log:
        "results/logs/predict/{model}/{task}/{split}.log",
    benchmark:
        "results/benchmarks/predict/{model}/{task}/{split}.tsv"
    params:
        videos=lambda w: split_videos(w.task, w.split),
        modality=lambda w: MODELS[w.model]["modality"],
        device=config["device"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/predict.py"


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
    params:
        videos=lambda w: split_videos(w.task, w.split),
        hamming_s=config["postprocess"]["hamming_s"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/smooth_predictions.py"
