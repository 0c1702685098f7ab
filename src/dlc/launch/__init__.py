"""Where a stage runs: in this process (`local`) or as a submitit job (`slurm`, and
`submitit-local`, the same job as a local subprocess)."""
