if config["corpus"]["demo"]:

    rule build_demo_corpus:
        output:
            [str(p) for p in demo_corpus_files(CORPUS, Path(config["corpus"]["demo_test_labels"]))],
        log:
            "results/logs/build_demo_corpus.log",
        benchmark:
            "results/benchmarks/build_demo_corpus.tsv"
        params:
            root=str(CORPUS),
            test_labels=config["corpus"]["demo_test_labels"],
        conda:
            "../envs/main.yaml"
        script:
            "../workflow/scripts/build_demo_corpus.py"
