/**
 * Names in the state machine that other parts rely on: the local run tells the featurize map's
 * progress from the aggregate's by them, and the dashboard follows the map runs' metrics.
 */

/**
 * The stack the CDK app deploys, whose outputs (BucketName, StateMachineArn) the CLI reads unless
 * `--stack` names another; the local run synthesizes it under the same name.
 */
export const DEFAULT_STACK_NAME = 'FruitsPipeline';

/**
 * The featurize Distributed Map's label. Its child executions report their CloudWatch metrics
 * (AWS/States) under `StateMachineArn` = `<state machine ARN>/<label>`; without a label that
 * suffix is a new UUID per run, and no dashboard or alarm could follow them.
 * https://docs.aws.amazon.com/step-functions/latest/dg/concepts-examine-map-run.html
 */
export const MAP_RUN_LABEL = 'FeaturizeImages';

/**
 * The aggregate's maps (labelled like the featurize map): the group maps, each a Distributed Map
 * over the plan's groups, and the moments merge tree's map over the nodes of a level.
 */
export const AGGREGATE_MAP_LABELS = { moments: 'ComputeMoments', merge: 'MergeMoments', project: 'ProjectGroups', classify: 'ClassifyGroups' } as const;
