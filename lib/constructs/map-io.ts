import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';

/*
 * The Distributed Map reads and writes the bucket named in the execution input (`Bucket.$`), so
 * CDK's reader and writer cannot know the bucket and grant on `Resource: *`. These keep the ASL
 * that CDK renders and replace only the grants, with statements scoped to the pipeline's bucket
 * and prefixes (any other bucket in the input is then denied by IAM, as it should be).
 */

export interface ScopedS3ObjectsItemReaderProps {
  /** JSONPath of the bucket to list. */
  readonly bucketNamePath: string;
  /** JSONPath of the key prefix to list. */
  readonly prefixPath: string;
  /** What the state machine role needs to list, e.g. `s3:ListBucket` with an `s3:prefix` condition. */
  readonly policyStatements: iam.PolicyStatement[];
}

/** ItemReader `s3:listObjectsV2` over `Bucket.$`/`Prefix.$`, granted only the given statements. */
export class ScopedS3ObjectsItemReader extends sfn.S3ObjectsItemReader {
  private readonly policyStatements: iam.PolicyStatement[];

  constructor(props: ScopedS3ObjectsItemReaderProps) {
    super({ bucketNamePath: sfn.JsonPath.stringAt(props.bucketNamePath), prefix: sfn.JsonPath.stringAt(props.prefixPath) });
    this.policyStatements = props.policyStatements;
  }

  public override providePolicyStatements(): iam.PolicyStatement[] {
    return this.policyStatements;
  }
}

export interface ScopedResultWriterV2Props {
  /** JSONPath of the bucket to write to. */
  readonly bucketNamePath: string;
  /** Key prefix, usually a `States.Format(...)` of the input (JsonPath.format). */
  readonly prefix: string;
  /** What the state machine role needs to write the results, scoped to their prefix. */
  readonly policyStatements: iam.PolicyStatement[];
  /**
   * How the results are written (Transformation, OutputType).
   * @default none: full records (Transformation NONE) as a JSON array
   */
  readonly writerConfig?: sfn.WriterConfig;
}

/** ResultWriter (V2 form: `Bucket.$` from the input) granted only the given statements. */
export class ScopedResultWriterV2 extends sfn.ResultWriterV2 {
  private readonly policyStatements: iam.PolicyStatement[];

  constructor(props: ScopedResultWriterV2Props) {
    super({ bucketNamePath: sfn.JsonPath.stringAt(props.bucketNamePath), prefix: props.prefix, writerConfig: props.writerConfig });
    this.policyStatements = props.policyStatements;
  }

  public override providePolicyStatements(): iam.PolicyStatement[] {
    return this.policyStatements;
  }
}

export interface ScopedS3JsonItemReaderProps {
  /** JSONPath of the bucket to read from. */
  readonly bucketNamePath: string;
  /** JSONPath of the key of a JSON array in that bucket. */
  readonly keyPath: string;
  /** What the state machine role needs to read it, scoped to its prefix. */
  readonly policyStatements: iam.PolicyStatement[];
}

/** ItemReader `s3:getObject` of a JSON array (`ReaderConfig.InputType: JSON`), granted only the given statements. */
export class ScopedS3JsonItemReader extends sfn.S3JsonItemReader {
  private readonly policyStatements: iam.PolicyStatement[];

  constructor(props: ScopedS3JsonItemReaderProps) {
    super({ bucketNamePath: sfn.JsonPath.stringAt(props.bucketNamePath), key: sfn.JsonPath.stringAt(props.keyPath) });
    this.policyStatements = props.policyStatements;
  }

  public override providePolicyStatements(): iam.PolicyStatement[] {
    return this.policyStatements;
  }
}
