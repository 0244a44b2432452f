"""The report generator: result files in, report.md + report.html + figures/*.png out.

Reads result files only (through `bench.contract.results`, which imports nothing heavy);
never imports TensorFlow, Horovod or NVML. The stages, one module each:

    load      find results sets (sweep folders), read and validate the files
    frame     one row per run, then one row per cell (median over repeats)
    analysis  scaling, TFRecord speedup, input-bound share, conversion pay-off
    telemetry GPU and host samples inside the measured window
    tables    the figures formatted as tables, with what each one means
    plots     the figures as PNG (matplotlib Agg): figure (style, PNG bytes), plot_series,
              scaling_plots, format_plots, utilization_plot
    document  the Report: sections of tables and figures
    build     assemble the Report from the results
    render_md / render_html  format it; write puts the files on disk

CLI: `python -m reports RESULTS [RESULTS ...] [--out DIR]` (see __main__).
"""
