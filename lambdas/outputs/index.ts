/**
 * The outputs: what a run writes under `results/<runId>/`, as text or bytes, with no AWS.
 * features.csv and predictions.csv rows, the Parquet copies, the explained variance, the scree and
 * scatter plots (Vega-Lite to SVG), README.txt, report.json (`RunReportBuilder`) and report.html.
 * The aggregate step streams them to S3; the local run and the CLI read report.json back. The
 * exports below are what the rest of the code may use from this folder.
 */
export { explainedVarianceCsv, featuresCsvHeader, featuresCsvRow, predictionsCsvHeader, predictionsCsvRow, restoreTextField } from './features-csv';
export { FeatureTableParquetWriter } from './features-parquet';
export { outputReadme, outputSchema } from './output-schema';
export { ScatterSample, scatterPlotSvg, screePlotSvg } from './plots';
export { type GalleryEntry, type GalleryImage, reportHtml } from './report-html';
export { type RunReport, RunReportBuilder } from './run-report';
