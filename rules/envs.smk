# Venvs for rules whose packages cannot share the main environment (envs/spleeter.yaml, envs/retinaface.yaml),
# built from the conda file's pip pins.
rule build_venv:
    output:
        venv_ready("{env}"),
    log:
        "results/logs/build_venv/{env}.log",
    wildcard_constraints:
        env="|".join(VENV_ENVS),
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        venv=lambda w, output: Path(output[0]).parent,
        env_file=lambda w: env_file(w.env),
        pins=lambda w: pip_pins(env_file(w.env)),
        python=lambda w: python_version(env_file(w.env)),
    script:
        "../workflow/scripts/build_venv.py"
