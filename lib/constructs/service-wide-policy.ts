import { Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/** Services whose actions here have no resource-level permissions, so `Resource: *` is the only form. */
const SERVICE_WIDE_ACTIONS = /^(xray|logs):[A-Za-z]+$/;

export interface ServiceWidePolicyProps {
  /** The role the statements are for. */
  readonly role: iam.IRole;
  /** Actions that support no resource-level permissions (X-Ray, CloudWatch Logs delivery), granted on `*`. */
  readonly actions: string[];
  /** Why these actions need `*`, with the doc that says so. */
  readonly reason: string;
}

/**
 * A policy of its own for the few actions that can only be granted on `Resource: *` (X-Ray
 * segments, vended-log delivery), so that cdk-nag's `AwsSolutions-IAM5[Resource::*]` finding is
 * acknowledged on this policy alone. The role's other policy (its DefaultPolicy, where every
 * `grant*` goes) stays checked: a wildcard grant added there later is a finding.
 */
export class ServiceWidePolicy extends iam.Policy {
  constructor(scope: Construct, id: string, props: ServiceWidePolicyProps) {
    super(scope, id, { roles: [props.role], statements: [new iam.PolicyStatement({ actions: [...props.actions].sort(), resources: ['*'] })] });
    const other = props.actions.filter((action) => !SERVICE_WIDE_ACTIONS.test(action));
    if (other.length > 0)
      throw new Error(`ServiceWidePolicy only holds X-Ray and log-delivery actions, not ${other.join(', ')}: grant those on their resources`);
    Validations.of(this).acknowledge({ id: 'AwsSolutions-IAM5[Resource::*]', reason: props.reason });
  }
}

/** What an actively traced function or state machine sends (https://docs.aws.amazon.com/xray/latest/devguide/security_iam_service-with-iam.html). */
export const XRAY_WRITE_ACTIONS = ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'];
/** Sampling rules, which a traced state machine reads as well. */
export const XRAY_SAMPLING_ACTIONS = ['xray:GetSamplingRules', 'xray:GetSamplingTargets'];
/** What Step Functions needs to deliver its logs to CloudWatch Logs (https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html). */
export const LOG_DELIVERY_ACTIONS = [
  'logs:CreateLogDelivery',
  'logs:GetLogDelivery',
  'logs:UpdateLogDelivery',
  'logs:DeleteLogDelivery',
  'logs:ListLogDeliveries',
  'logs:PutResourcePolicy',
  'logs:DescribeResourcePolicies',
  'logs:DescribeLogGroups',
];
