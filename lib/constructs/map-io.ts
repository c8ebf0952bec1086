import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';

/*
 * The Distributed Map reads and writes the bucket named in the execution input (`Bucket.$`), so
 * CDK's reader and writer cannot know the bucket and grant on `Resource: *`. These keep the ASL
 * that CDK renders and replace only the grants, with statements scoped to the pipeline's bucket
 * and prefixes (any other bucket in the input is then denied by IAM, as it should be).
 */

/** A Distributed Map's item reader or result writer: what it grants the state machine role. */
interface GrantsToStateMachine {
  providePolicyStatements(): iam.PolicyStatement[];
}

/** `io` with its grants replaced by `policyStatements`: its ASL is what CDK renders for it. */
function grantingOnly<T extends GrantsToStateMachine>(io: T, policyStatements: iam.PolicyStatement[]): T {
  io.providePolicyStatements = () => policyStatements;
  return io;
}

/** Where a Distributed Map reads or writes, and what the state machine role needs there. */
export interface ScopedMapIoProps {
  /** JSONPath of the bucket in the input. */
  readonly bucketNamePath: string;
  /** The statements granted to the state machine role, scoped to what it reads or writes. */
  readonly policyStatements: iam.PolicyStatement[];
}

/**
 * ItemReader `s3:listObjectsV2` over `Bucket.$`/`Prefix.$` (`prefixPath`: JSONPath of the key
 * prefix to list), granted only the given statements, e.g. `s3:ListBucket` with an `s3:prefix`
 * condition.
 */
export function scopedS3ObjectsItemReader(props: ScopedMapIoProps & { readonly prefixPath: string }): sfn.S3ObjectsItemReader {
  const reader = new sfn.S3ObjectsItemReader({ bucketNamePath: sfn.JsonPath.stringAt(props.bucketNamePath), prefix: sfn.JsonPath.stringAt(props.prefixPath) });
  return grantingOnly(reader, props.policyStatements);
}

/**
 * ResultWriter (V2 form: `Bucket.$` from the input) under `prefix` (usually a `States.Format(...)`
 * of the input, JsonPath.format), granted only the given statements; `writerConfig` says how the
 * results are written (Transformation, OutputType), by default full records (NONE) as a JSON array.
 */
export function scopedResultWriterV2(props: ScopedMapIoProps & { readonly prefix: string; readonly writerConfig?: sfn.WriterConfig }): sfn.ResultWriterV2 {
  const { bucketNamePath, prefix, writerConfig } = props;
  const writer = new sfn.ResultWriterV2({ bucketNamePath: sfn.JsonPath.stringAt(bucketNamePath), prefix, writerConfig });
  return grantingOnly(writer, props.policyStatements);
}

/**
 * ItemReader `s3:getObject` of a JSON array (`ReaderConfig.InputType: JSON`) at `keyPath` (JSONPath
 * of its key), granted only the given statements.
 */
export function scopedS3JsonItemReader(props: ScopedMapIoProps & { readonly keyPath: string }): sfn.S3JsonItemReader {
  const reader = new sfn.S3JsonItemReader({ bucketNamePath: sfn.JsonPath.stringAt(props.bucketNamePath), key: sfn.JsonPath.stringAt(props.keyPath) });
  return grantingOnly(reader, props.policyStatements);
}
