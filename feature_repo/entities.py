from featureplane import Entity, Field, String

user = Entity(
    name="user",
    join_keys=[Field("user_id", String)],
    description="A card holder.",
    owner="fraud-team@example.com",
)
