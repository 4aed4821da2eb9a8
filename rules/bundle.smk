# The portable model bundle (avaffect.app.bundle, docs/bundle.md): per task the submitted system's fusion and
# the models it fuses. Its inputs are those of every system the submission chooses among; the job copies the
# chosen one's.
BUNDLE_FILES = {
    "selection": "results/models/{model}/{task}/selected.json",
    "checkpoint": "results/models/{model}/{task}/w{window}/checkpoint.pt",
    "fusion": "results/fusion/{task}/{system}/fusion.safetensors",
    "parameters": "results/fusion/{task}/{system}/parameters.json",
}
# The fine-tuned weights an extractor reads, for a bundle whose models read it.
EXTRACTOR_WEIGHTS = {"static": "results/static/checkpoint.pt"} | (
    {"pdem": PDEM_FINETUNED_WEIGHTS} if PDEM_FINETUNE_LAYERS else {}
)


def submitted_models():
    """(model, task) of every model a system the submission chooses among fuses."""
    return sorted({(m, task) for system in SUBMITTED for task in TASKS for m in system_models(system, task)})


def extractor_weights(wildcards):
    extractors = {MODELS[m]["extractor"] for m, _ in submitted_models()}
    return {name: path for name, path in EXTRACTOR_WEIGHTS.items() if name in extractors}


rule bundle:
    input:
        unpack(detector_weights),
        unpack(extractor_weights),
        choices=expand("results/submission_{task}.json", task=TASKS),
        selections=[BUNDLE_FILES["selection"].format(model=m, task=t) for m, t in submitted_models()],
        checkpoints=[
            BUNDLE_FILES["checkpoint"].format(model=m, task=t, window=w)
            for m, t in submitted_models()
            for w in window_tags(m)
        ],
        fusions=expand(BUNDLE_FILES["fusion"], task=TASKS, system=SUBMITTED),
        parameters=expand(BUNDLE_FILES["parameters"], task=TASKS, system=SUBMITTED),
    output:
        bundle=directory("results/bundle"),
        archive="results/bundle.tar.gz",
    log:
        "results/logs/bundle.log",
    benchmark:
        "results/benchmarks/bundle.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        tasks=TASKS,
        files=BUNDLE_FILES,
        detectors=list(DETECTOR_WEIGHTS),
        extractor_weights=EXTRACTOR_WEIGHTS,
    script:
        "../workflow/scripts/bundle.py"
