{#
  The time window of the microbatch being built, for models that need rows from before it.

  dbt filters each ref() of a microbatch model to the batch's [start, end) on the upstream model's
  event_time. A model that looks back (a rolling 7-day sum) reads the upstream unfiltered with
  ref(...).render() and keeps the rows from `lookback_days` before the batch with this macro. Outside a
  microbatch run (dbt compile, dbt show) there is no batch and the condition is always true.
#}
{% macro in_batch_window(column, lookback_days=0) -%}
  {%- set batch = model.get('batch') -%}
  {%- if batch and batch.get('event_time_start') -%}
    {%- set start = (batch.get('event_time_start') | string)[:19] -%}
    {%- set end = (batch.get('event_time_end') | string)[:19] -%}
    {{ column }} >= {{ dbt.dateadd('day', -lookback_days, "cast('" ~ start ~ "' as timestamp)") }}
    and {{ column }} < cast('{{ end }}' as timestamp)
  {%- else -%}
    1 = 1
  {%- endif -%}
{%- endmacro %}
