from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/envs.smk"
include: "rules/corpus.smk"
include: "rules/audio.smk"
include: "rules/video.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/fusion.smk"
include: "rules/report.smk"
include: "rules/bundle.smk"


rule all:
    default_target: True
    input:
        expand("results/submission_{task}.txt", task=TASKS),
        expand("results/submissions/{system}/submission_{task}.txt", system=SYSTEMS, task=TASKS),
        "results/metrics/validation.csv",
        expand("results/report/validation/{task}", task=TASKS),
        rules.runtimes.output,
        rules.bundle.output,
