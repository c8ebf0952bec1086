/**
 * What each output of a run holds, column by column: written as the `schema` section of
 * report.json and, for people who open the folder first, as README.txt beside the outputs. One
 * description, two renderings, so they cannot disagree.
 */
import { RESULT_FILES } from '../contracts/bucket-layout';
import type { ClassifierKind } from '../contracts/handler-env';

export interface ColumnDescription {
  name: string;
  /** CSV: text or number; Parquet: the physical and logical type. */
  type: string;
  description: string;
}

export interface FileDescription {
  file: string;
  description: string;
  columns?: ColumnDescription[];
}

export interface OutputSchema {
  runId: string;
  files: FileDescription[];
}

export interface OutputSchemaInput {
  runId: string;
  /** Components kept. */
  k: number;
  /** Feature vector length (embeddings.parquet columns). */
  dim: number;
  classified: boolean;
  /** What predicted: a fitted head (pca-model.json's `classifier`: the LDA, logistic regression or both), or k-NN. @default 'knn' */
  classifier?: ClassifierKind;
  /** pca-model.json holds the classifier this run fitted. @default false */
  savedClassifier?: boolean;
  embeddings: boolean;
  /** The references parts knn-references/part-*.fsh were written (a fitting run with Training rows). @default false */
  references?: boolean;
  /** The saved model a projecting run used: it writes no pca-model.json of its own. */
  projectedWith?: { model: string; runId: string };
  /** Whether features.parquet (and embeddings.parquet) were written as one file beside the dataset's parts. @default true */
  singleParquet?: boolean;
}

const TEXT_NOTE = "text; a cell that would start with = + - @ TAB CR or ' is written with one leading ' (CSV injection guard), drop it to read the value";

/** The schema's input with its defaults filled in. */
type SchemaOptions = Required<Omit<OutputSchemaInput, 'projectedWith'>> & Pick<OutputSchemaInput, 'projectedWith'>;

/**
 * Every output of the run in the order README.txt lists them: the tables, the model and its
 * references, the fit's table and plots, the reports.
 */
export function outputSchema({
  runId,
  k,
  dim,
  classified,
  classifier = 'knn',
  savedClassifier = false,
  embeddings,
  references = false,
  projectedWith,
  singleParquet = true,
}: OutputSchemaInput): OutputSchema {
  const options: SchemaOptions = { runId, k, dim, classified, classifier, savedClassifier, embeddings, references, projectedWith, singleParquet };
  const files: FileDescription[] = [
    ...featuresFiles(options),
    ...(classified ? [predictionsFile(options)] : []),
    ...(embeddings ? [embeddingsFile(options)] : []),
    modelFile(options),
    ...(references ? [referencesFile()] : []),
    ...fitFiles(options),
    ...reportFiles(),
  ];
  return { runId, files };
}

/** The columns every table starts with, as CSV text (`text`) or as Parquet. */
function identityColumns(text: boolean): ColumnDescription[] {
  return [
    { name: 'key', type: text ? 'text' : 'BYTE_ARRAY UTF8, required', description: `S3 object key of the image${text ? ` (${TEXT_NOTE})` : ''}` },
    { name: 'label', type: text ? 'text' : 'BYTE_ARRAY UTF8, required', description: "the image's parent folder" },
    {
      name: 'split',
      type: text ? 'text' : 'BYTE_ARRAY UTF8, optional',
      description: `train (under a Training/ or Train/ folder), test (Test/, Testing/, Validation/), or ${text ? 'empty' : 'null'} when the key names no split`,
    },
  ];
}

/** The component score columns' name. */
const componentColumns = (k: number): string => (k === 1 ? 'pc_1' : `pc_1 .. pc_${k}`);

/** features.csv, the features Parquet dataset and, a run of one group's, its one file. */
function featuresFiles({ k, projectedWith, singleParquet }: SchemaOptions): FileDescription[] {
  const pcs = componentColumns(k);
  return [
    {
      file: RESULT_FILES.features,
      description: 'one row per image featurized: its principal component scores (RFC 4180 CSV, UTF-8, CRLF)',
      columns: [
        ...identityColumns(true),
        {
          name: pcs,
          type: 'number',
          description: `score on each kept component, 8 significant digits${projectedWith ? ` (the components of run ${projectedWith.runId}'s model)` : ''}`,
        },
      ],
    },
    {
      file: `${RESULT_FILES.featuresParts}part-*.parquet`,
      description:
        "the rows of features.csv as one typed Parquet dataset, a part per group of shards (row groups of 32,768 rows, SNAPPY text columns): read it as one table, e.g. DuckDB read_parquet('features/*.parquet')",
      columns: [...identityColumns(false), { name: pcs, type: 'FLOAT (32-bit), required', description: 'score on each kept component' }],
    },
    ...(singleParquet
      ? [
          {
            file: RESULT_FILES.featuresParquet,
            description: `the same table as ${RESULT_FILES.featuresParts} in one file (a run of one group of shards only)`,
          },
        ]
      : []),
  ];
}

/** What pca-model.json's `classifier` holds for each fitted head. */
const SAVED_CLASSIFIER_FIELDS: Record<ClassifierKind, string> = {
  lda: 'the LDA: format, centre, projection, prototypes, labels',
  logistic: 'logistic regression: format, dim (the leading components it reads), scale, weights, labels',
  'lda+logistic':
    'both: format, ldaWeight, lda (centre, projection, prototypes, labels), logistic (dim: the leading components it reads, scale, weights, labels)',
  knn: 'none',
};

/** What predictions.csv's columns mean for each classifier. */
const PREDICTION_COLUMNS: Record<ClassifierKind, { name: string; predicted: string; confidence: string; distance: string }> = {
  lda: {
    name: 'LDA',
    predicted: "the class whose nearest prototype scores highest in the LDA's discriminant space (report.json classification)",
    confidence: 'softmax probability of the predicted class over the class scores, in (0, 1]: ranks right above wrong, not a calibrated probability',
    distance: 'Euclidean distance, in the discriminant space, to the nearest prototype of the predicted class',
  },
  logistic: {
    name: 'logistic regression',
    predicted: 'the class of highest probability under the multinomial logistic regression (report.json classification)',
    confidence: 'softmax probability of the predicted class, in (0, 1]',
    distance: 'empty: logistic regression decides by no prototype or reference',
  },
  'lda+logistic': {
    name: 'LDA + logistic regression',
    predicted: "the class of highest combined score: the LDA's log-probability times ldaWeight plus logistic regression's (report.json classification)",
    confidence: 'softmax of the combined scores at the predicted class, in (0, 1]: ranks right above wrong, not a calibrated probability',
    distance: "Euclidean distance, in the LDA's discriminant space, to the nearest prototype of the predicted class",
  },
  knn: {
    name: 'k-NN',
    predicted: 'the label voted by the k nearest Training images (report.json classification)',
    confidence: 'share of the k neighbours that voted for the predicted label',
    distance: 'Euclidean distance, over the components, to the nearest Training image',
  },
};

/** predictions.csv, as the classifier predicts. */
function predictionsFile({ classifier, projectedWith }: SchemaOptions): FileDescription {
  const columns = PREDICTION_COLUMNS[classifier];
  const withModel = classifier !== 'knn';
  return {
    file: RESULT_FILES.predictions,
    description: projectedWith
      ? `the ${columns.name} prediction of every image, with the ${withModel ? 'classifier of the model' : 'Training references (the parts knnReferences names, beside the model)'} of run ${projectedWith.runId}`
      : `the ${columns.name} prediction of every image that is not a Training image (Test rows, and rows with no or another split)`,
    columns: [
      ...identityColumns(true),
      { name: 'predicted', type: 'text', description: columns.predicted },
      { name: 'confidence', type: 'number', description: columns.confidence },
      { name: 'nearest_distance', type: 'number', description: columns.distance },
    ],
  };
}

/** The raw feature vectors: one file in a run of one group, else a Parquet dataset. */
function embeddingsFile({ dim, singleParquet }: SchemaOptions): FileDescription {
  return {
    file: singleParquet ? RESULT_FILES.embeddings : `${RESULT_FILES.embeddingsParts}part-*.parquet`,
    description: 'the raw feature vectors before standardisation and PCA, one row per row of features.csv',
    columns: [...identityColumns(false), { name: `f_1 .. f_${dim}`, type: 'FLOAT (32-bit), required', description: "the featurizer's output vector" }],
  };
}

/** pca-model.json: the fitted PCA, or why a projecting run writes none. */
function modelFile({ runId, references, classifier, savedClassifier, projectedWith }: SchemaOptions): FileDescription {
  if (projectedWith) {
    return {
      file: RESULT_FILES.model,
      description:
        `not written: this run fitted nothing, it standardised and projected its images with the saved model ${projectedWith.model} ` +
        `(run ${projectedWith.runId}; report.json pca.model), which stays the one copy: pass that run to --model-from again to project more images the same way`,
    };
  }
  return {
    file: RESULT_FILES.model,
    description:
      'the fitted PCA: score = ((x - mean) / scale) . component for each kept component (the first k of components; when classifierK is set, components holds that many, the further ones seen by the classifier only); ' +
      'mean, scale, components, eigenvalues, explainedVarianceRatio, ' +
      `featurizer${references ? `, knnReferences (the references parts under ${RESULT_FILES.knnReferences}: each one's file, rows, bytes and SHA-256)` : ''}${savedClassifier ? `, classifier (${SAVED_CLASSIFIER_FIELDS[classifier]})` : ''}. A later run projects new images with it: execution input {"pcaModel": "results/${runId}/${RESULT_FILES.model}"}, or --model-from ${runId}`,
  };
}

/** The references parts, beside the model. */
function referencesFile(): FileDescription {
  return {
    file: `${RESULT_FILES.knnReferences}part-*.fsh`,
    description:
      "the classifier's references, for a run that projects with pca-model.json: the Training rows' keys and labels and their k scores as float32, " +
      "a part per group of shards that held Training rows (pca-model.json's knnReferences lists them in order), " +
      'each in the feature-shard format (magic FSH1, uint32 header length, JSON header, then rows x k float32 little-endian)',
  };
}

/** The fit's explained variance table and its plots. */
function fitFiles({ projectedWith }: SchemaOptions): FileDescription[] {
  return [
    {
      file: RESULT_FILES.explainedVariance,
      description: projectedWith ? `one row per component of the model of run ${projectedWith.runId}` : 'one row per component',
      columns: [
        { name: 'component', type: 'text', description: 'pc_<n>' },
        { name: 'eigenvalue', type: 'number', description: 'of the standardised correlation matrix' },
        { name: 'explained_variance_ratio', type: 'number', description: "the component's share of the total variance" },
        { name: 'cumulative_explained_variance_ratio', type: 'number', description: 'share of the components up to this one' },
        { name: 'kept', type: 'true/false', description: 'whether the component is one of the k kept' },
      ],
    },
    {
      file: RESULT_FILES.scree,
      description: `explained variance by component, the chosen k marked (SVG)${projectedWith ? `, of the model of run ${projectedWith.runId}` : ''}`,
    },
    { file: RESULT_FILES.scatter, description: 'the images on the first two components, by label and split (SVG)' },
  ];
}

/** report.json and report.html. */
function reportFiles(): FileDescription[] {
  return [
    {
      file: RESULT_FILES.report,
      description: 'what happened to every listed object (counts, failed and skipped with reasons), the PCA, the classification, the settings, this schema',
    },
    { file: RESULT_FILES.html, description: 'report.json, the plots and a gallery of misclassified images on one self-contained page' },
  ];
}

/** The schema as plain text for README.txt. */
export function outputReadme(schema: OutputSchema): string {
  const lines = [`Outputs of run ${schema.runId} (fruits-pipeline)`, ''];
  for (const file of schema.files) {
    lines.push(`${file.file}`, `  ${file.description}`);
    for (const column of file.columns ?? []) lines.push(`    ${column.name} [${column.type}]: ${column.description}`);
    lines.push('');
  }
  return lines.join('\n');
}
