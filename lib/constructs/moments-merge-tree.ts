import { Token } from 'aws-cdk-lib';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { AGGREGATE_MAP_LABELS } from '../../lambdas/contracts/state-machine';

export interface MomentsMergeTreeProps {
  /** Partials one `MergeMoments` child merges, and the most left for the fit (AGGREGATE_SETTINGS.momentsMergeFanIn). */
  readonly fanIn: number;
  /** What each child runs on its event (`$`): the aggregate function's `merge-moments` stage. */
  readonly mergeNode: sfn.IChainable;
  /** The RunSettings fields as the children get them (`{ "bucket.$": "$.bucket", ... }`). */
  readonly runSettings: Record<string, string>;
  /** Concurrent children of each level's map (Distributed Map MaxConcurrency). */
  readonly maxConcurrency: number;
  /** Where the run goes once at most `fanIn` partials are left: the fit. */
  readonly next: sfn.IChainable;
}

/**
 * The moments merge tree as states, entered after `ComputeMoments` (docs/DESIGN.md):
 *
 *   ChooseMomentsMerge   (Choice) a projecting run, or one of at most `fanIn` groups: straight on
 *   StartMomentsMerge    (Pass)   `$.merge` = { level: 0, partials: the group count }
 *   NextMergeLevel       (Pass)   the next level: its number, the partials below (`inputs`), the
 *                                 first input of each node (`firsts`, States.ArrayRange by `fanIn`)
 *                                 and how many nodes (`partials`)
 *   MergeMoments         (Distributed Map over `firsts`) one `merge-moments` child per node
 *   ChooseMoreMerging    (Choice) more than `fanIn` partials left: NextMergeLevel again
 *
 * The levels are `momentsMergeLevels` (lambdas/aggregate/aggregate-work.ts): the fit, handed the
 * same `fanIn`, merges the last one. The node list is computed here rather than written to S3:
 * it is a function of two numbers, and writing it would take an invocation per level.
 * States.ArrayRange makes at most 1,000 items, so one level holds at most 1,000 nodes: runs of up
 * to 1,000 x `fanIn` groups (160,000,000 images at the defaults).
 */
export class MomentsMergeTree extends Construct {
  /** The state to go to after the groups' moments. */
  public readonly start: sfn.Choice;
  /** The one state of the tree that invokes anything: a failure there is worth catching. */
  public readonly mergeMoments: sfn.DistributedMap;

  constructor(scope: Construct, id: string, props: MomentsMergeTreeProps) {
    super(scope, id);
    const { fanIn } = props;
    const nextMergeLevel = new sfn.Pass(this, 'NextMergeLevel', {
      parameters: nextLevelOf('$.merge', fanIn),
      resultPath: '$.merge',
    });
    this.mergeMoments = new sfn.DistributedMap(this, AGGREGATE_MAP_LABELS.merge, {
      label: AGGREGATE_MAP_LABELS.merge,
      itemsPath: '$.merge.firsts',
      itemSelector: {
        stage: 'merge-moments',
        run: props.runSettings,
        level: sfn.JsonPath.numberAt('$.merge.level'),
        first: sfn.JsonPath.numberAt('$$.Map.Item.Value'),
        inputs: sfn.JsonPath.numberAt('$.merge.inputs'),
        fanIn,
      },
      maxConcurrency: props.maxConcurrency,
      mapExecutionType: sfn.StateMachineType.STANDARD,
      resultPath: sfn.JsonPath.DISCARD,
    });
    this.mergeMoments.itemProcessor(props.mergeNode);
    const chooseMoreMerging = new sfn.Choice(this, 'ChooseMoreMerging')
      .when(sfn.Condition.numberGreaterThan('$.merge.partials', fanIn), nextMergeLevel)
      .otherwise(props.next);
    nextMergeLevel.next(this.mergeMoments).next(chooseMoreMerging);

    const startMomentsMerge = new sfn.Pass(this, 'StartMomentsMerge', {
      parameters: { level: 0, partials: sfn.JsonPath.numberAt('$.plan.groups') },
      resultPath: '$.merge',
    }).next(nextMergeLevel);
    // `Not IsPresent` rather than `IsPresent: false`, which the local runner's interpreter never matches.
    this.start = new sfn.Choice(this, 'ChooseMomentsMerge')
      .when(
        sfn.Condition.and(sfn.Condition.not(sfn.Condition.isPresent('$.pcaModel')), sfn.Condition.numberGreaterThan('$.plan.groups', fanIn)),
        startMomentsMerge,
      )
      .otherwise(props.next);
  }
}

/** The level above the one at `at` (`{ level, partials }`): one node per `fanIn` of its partials. */
function nextLevelOf(at: string, fanIn: number): Record<string, unknown> {
  // An intrinsic's result as another's number argument (the JsonPath helpers type them as strings).
  const lastInput = Token.asNumber(sfn.JsonPath.mathAdd(sfn.JsonPath.numberAt(`${at}.partials`), -1));
  return {
    level: sfn.JsonPath.mathAdd(sfn.JsonPath.numberAt(`${at}.level`), 1),
    inputs: sfn.JsonPath.numberAt(`${at}.partials`),
    firsts: sfn.JsonPath.arrayRange(0, lastInput, fanIn),
    partials: sfn.JsonPath.arrayLength(sfn.JsonPath.arrayRange(0, lastInput, fanIn)),
  };
}
