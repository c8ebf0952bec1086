import * as budgets from 'aws-cdk-lib/aws-budgets';
import { Construct } from 'constructs';

export interface CostBudgetProps {
  /** Monthly limit in USD. */
  readonly monthlyUsd: number;
  /** Who gets the alerts. */
  readonly email: string;
  /** The cost-allocation tag the budget counts (it must be activated in Billing to be counted). */
  readonly tagKey: string;
  readonly tagValue: string;
}

/**
 * A monthly AWS Budgets cost budget on the stack's cost-allocation tag: an e-mail when the
 * forecast passes the limit and when actual spend passes 80% of it. Budgets only alert; nothing
 * is stopped. CloudFormation names the budget (no hard-coded name).
 */
export class CostBudget extends Construct {
  public readonly budget: budgets.CfnBudget;

  constructor(scope: Construct, id: string, props: CostBudgetProps) {
    super(scope, id);
    const subscribers = [{ subscriptionType: 'EMAIL', address: props.email }];
    const alert = (notificationType: 'ACTUAL' | 'FORECASTED', threshold: number) => ({
      notification: { notificationType, comparisonOperator: 'GREATER_THAN', threshold, thresholdType: 'PERCENTAGE' },
      subscribers,
    });
    this.budget = new budgets.CfnBudget(this, 'Budget', {
      budget: {
        budgetType: 'COST',
        timeUnit: 'MONTHLY',
        budgetLimit: { amount: props.monthlyUsd, unit: 'USD' },
        // https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_Budget.html (CostFilters: TagKeyValue)
        costFilters: { TagKeyValue: [`user:${props.tagKey}$${props.tagValue}`] },
      },
      notificationsWithSubscribers: [alert('FORECASTED', 100), alert('ACTUAL', 80)],
    });
  }
}
