from feature_views.transactions import user_transaction_metrics

from featureplane import Attribute, Bool, Field, Float64, RequestSource, realtime_feature_view

transaction_request = RequestSource(schema=[Field("amount", Float64)])


@realtime_feature_view(
    sources=[transaction_request, user_transaction_metrics],
    mode="python",
    features=[
        Attribute("amount_vs_30d_mean", Float64),
        Attribute("amount_zscore_30d", Float64),
        Attribute("is_unusually_large", Bool),
    ],
    owner="fraud-team@example.com",
    tags={"domain": "payments"},
)
def transaction_amount_vs_history(request, user_transaction_metrics):
    """How the amount being authorised compares with the card holder's last 30 days."""
    amount = request["amount"]
    mean = user_transaction_metrics["amount_mean_30d"]
    stddev = user_transaction_metrics["amount_stddev_samp_30d"]
    ratio = amount / mean if mean else None
    zscore = (amount - mean) / stddev if mean is not None and stddev else None
    return {
        "amount_vs_30d_mean": ratio,
        "amount_zscore_30d": zscore,
        "is_unusually_large": zscore is not None and zscore > 3,
    }
