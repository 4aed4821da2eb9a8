rule fetch_resource:
    output:
        "resources/{resource_file}",
    log:
        "results/logs/fetch_resource/{resource_file}.log",
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        resource=lambda w: RESOURCES[RESOURCE_BY_FILE[w.resource_file]].to_dict(),
        mirror=config["resources"]["mirror"],
        accept_unpinned=lambda w: RESOURCE_BY_FILE[w.resource_file] in config["resources"]["accept_unpinned"],
    script:
        "../workflow/scripts/fetch_resource.py"
