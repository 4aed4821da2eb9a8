rule train:
    input:
        embeddings=lambda w: model_embeddings(w.model, w.task, ["train", "validation"]),
        probes=lambda w: probes(w.task, ["train", "validation"]),
        annotations=lambda w: annotations(w.task, "train") + annotations(w.task, "validation"),
    output:
        checkpoint="results/models/{model}/{task}/w{window}/checkpoint.pt",
        metrics="results/models/{model}/{task}/w{window}/metrics.json",
        history="results/models/{model}/{task}/w{window}/history.tsv",
    log:
        "results/logs/train/{model}/{task}/w{window}.log",
    benchmark:
        "results/benchmarks/train/{model}/{task}/w{window}.tsv"
    params:
        samples=lambda w: samples_by_split(w.task, ["train", "validation"]),
        corpus=str(CORPUS),
        model=lambda w: model_settings(w.model),
        family=lambda w: family_settings(w.model),
        rate_hz=config["embeddings"]["rate_hz"],
        expr_label_s=config["training"]["expr_label_s"],
        device=config["device"],
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/train.py"
