//! Parquet sink: hive-partitioned, atomically written tables of sessions, their charging
//! periods, revenue, health, per-port uptime and outages.
//!
//! Owns: the Parquet tables under an output directory and their schemas
//! (`schemas/parquet.md` documents them). This is the only code in evflow that writes Parquet;
//! it also reads the tables back for tests and tools.
//!
//! Layout: `OUT/TABLE/date=YYYY-MM-DD/part-NNNNNN.parquet`, where the UTC date comes from
//! `end_time` (sessions), `session_end_time` (charging periods: a session's periods share its
//! partition), `window_start` (revenue, health), `period_start` (uptime) or `start`
//! (outages) and `NNNNNN` is the writer's
//! flush sequence number. A file is written under a hidden temporary name in its final
//! directory (`.part-NNNNNN.parquet.tmp`, ignored by DuckDB/Spark globs), fsynced, then
//! renamed, so readers only ever see whole files. Rows are sorted within a file and names
//! contain no time or randomness, so two runs over the same input produce identical files.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError as ParquetLibError;
use parquet::file::properties::WriterProperties;
use rust_decimal::{Decimal, RoundingStrategy};

use serde::{Deserialize, Serialize};

use crate::model::{
    AuditFacts, CostPair, EnergySource, HealthComponent, HealthLevel, HealthRow, Millis, Money,
    OutageRecord, RevenueRow, SessionRecord, UptimePeriod, UptimeRow,
};
use crate::time::date_string;

/// Money columns are DECIMAL(18, 4).
const MONEY_PRECISION: u8 = 18;
const MONEY_SCALE: u32 = 4;
/// Exclusive bound of an 18-digit unscaled value.
const MONEY_LIMIT: i128 = 1_000_000_000_000_000_000;

/// Errors of the Parquet sink.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetLibError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// The value needs more than 18 digits at scale 4.
    #[error("{column} = {value} does not fit DECIMAL(18,4)")]
    DecimalOverflow {
        column: &'static str,
        value: Decimal,
    },
    /// The value has non-zero digits beyond the 4th decimal place: the pricing stage should
    /// have rounded it, and the sink refuses to round money silently.
    #[error("{column} = {value} has more than 4 decimal places")]
    DecimalInexact {
        column: &'static str,
        value: Decimal,
    },
    #[error("{column} = {value} is out of range for its Parquet column")]
    OutOfRange { column: &'static str, value: i64 },
    /// The target file already exists: another writer or an earlier run used this output
    /// directory (see [`ParquetTable::resume`]). Never overwritten, so no data is lost.
    #[error("{0} already exists; use an empty output directory or resume the writer")]
    Exists(PathBuf),
    /// A file being read does not have the table's schema.
    #[error("{path}: {detail}")]
    Schema { path: PathBuf, detail: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ParquetError + '_ {
    move |source| ParquetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one [`ParquetTable::flush`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Final paths of the files written, in date order.
    pub files: Vec<PathBuf>,
    pub rows: usize,
    pub bytes: u64,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::model::SessionRecord {}
    impl Sealed for crate::model::RevenueRow {}
    impl Sealed for crate::model::HealthRow {}
    impl Sealed for crate::model::UptimeRow {}
    impl Sealed for crate::model::OutageRecord {}
    impl Sealed for super::ChargingPeriodRow {}
}

/// A record type with a Parquet table: implemented for [`SessionRecord`],
/// [`ChargingPeriodRow`], [`RevenueRow`], [`HealthRow`], [`UptimeRow`] and [`OutageRecord`]
/// only.
pub trait ParquetRow: Sized + sealed::Sealed {
    /// Directory name of the table under the output directory.
    const TABLE: &'static str;
    fn schema() -> SchemaRef;
    /// The instant whose UTC date is the row's `date=` partition.
    fn partition_time(&self) -> Millis;
    /// Total order of rows within a file: the table's key, then every other field, so that
    /// the order never depends on the order rows were pushed in.
    fn sort_cmp(&self, other: &Self) -> Ordering;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError>;
    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError>;
}

/// A buffering writer of one table. Rows are pushed, then [`flush`](Self::flush) writes them,
/// one file per date partition. Nothing touches the disk before the first non-empty flush.
pub struct ParquetTable<R> {
    table_dir: PathBuf,
    buffer: Vec<R>,
    next_seq: u64,
    _row: PhantomData<fn(R)>,
}

pub type SessionsWriter = ParquetTable<SessionRecord>;
pub type RevenueWriter = ParquetTable<RevenueRow>;
pub type HealthWriter = ParquetTable<HealthRow>;
pub type ChargingPeriodsWriter = ParquetTable<ChargingPeriodRow>;
pub type UptimeWriter = ParquetTable<UptimeRow>;
pub type OutagesWriter = ParquetTable<OutageRecord>;

/// One row of `charging_periods/`: one charging period of a session (OCPI CDR
/// `charging_periods`), keyed by its session (charge point, connector, transaction, end) and
/// its index. Saved in commit snapshots (bincode) while buffered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChargingPeriodRow {
    pub charge_point_id: Arc<str>,
    pub connector_id: u32,
    pub transaction_id: String,
    /// The session's `end_time`: the row's `date=` partition is the session's.
    pub session_end_time: Millis,
    /// Index of the period within the session, from 0, in time order.
    pub period: u32,
    pub start_time: Millis,
    pub energy_wh: i64,
    pub charging_ms: i64,
    pub parking_ms: i64,
    /// The highest power sampled in the period, W.
    pub max_power_w: Option<f64>,
}

/// The `charging_periods/` rows of a session's periods, indexed from 0.
pub fn period_rows(s: &SessionRecord) -> impl Iterator<Item = ChargingPeriodRow> + '_ {
    (0u32..)
        .zip(&s.periods)
        .map(move |(period, p)| ChargingPeriodRow {
            charge_point_id: s.charge_point_id.clone(),
            connector_id: s.connector_id,
            transaction_id: s.transaction_id.clone(),
            session_end_time: s.end_time,
            period,
            start_time: p.start_time,
            energy_wh: p.energy_wh,
            charging_ms: p.charging_ms,
            parking_ms: p.parking_ms,
            max_power_w: p.max_power_w,
        })
}

/// Writer of `OUT/sessions/`.
pub fn sessions_writer(out_dir: &Path) -> SessionsWriter {
    ParquetTable::new(out_dir)
}

/// Writer of `OUT/charging_periods/`.
pub fn charging_periods_writer(out_dir: &Path) -> ChargingPeriodsWriter {
    ParquetTable::new(out_dir)
}

/// Writer of `OUT/revenue/`.
pub fn revenue_writer(out_dir: &Path) -> RevenueWriter {
    ParquetTable::new(out_dir)
}

/// Writer of `OUT/health/`.
pub fn health_writer(out_dir: &Path) -> HealthWriter {
    ParquetTable::new(out_dir)
}

/// Writer of `OUT/uptime/`.
pub fn uptime_writer(out_dir: &Path) -> UptimeWriter {
    ParquetTable::new(out_dir)
}

/// Writer of `OUT/outages/`.
pub fn outages_writer(out_dir: &Path) -> OutagesWriter {
    ParquetTable::new(out_dir)
}

impl<R: ParquetRow> ParquetTable<R> {
    /// A writer of `out_dir/R::TABLE` whose first flush is number 0.
    pub fn new(out_dir: &Path) -> Self {
        ParquetTable {
            table_dir: out_dir.join(R::TABLE),
            buffer: Vec::new(),
            next_seq: 0,
            _row: PhantomData,
        }
    }

    /// Continues numbering after the highest `part-N.parquet` already in the table (for a
    /// process that restarts into the same output directory). Without it, a flush into a
    /// non-empty table fails with [`ParquetError::Exists`] rather than overwrite a file.
    pub fn resume(mut self) -> Result<Self, ParquetError> {
        for (seq, _) in list_parts(&self.table_dir)? {
            self.next_seq = self.next_seq.max(seq + 1);
        }
        Ok(self)
    }

    /// The writer's state for a commit snapshot: the next file number and the buffered rows.
    pub fn state(&self) -> (u64, &[R]) {
        (self.next_seq, &self.buffer)
    }

    /// Restores a commit snapshot's state: files numbered `next_seq` or higher (written
    /// after that commit, and written again by the replay) and temporary files are removed,
    /// and the rows buffered at the commit are buffered again.
    pub fn restore(mut self, next_seq: u64, rows: Vec<R>) -> Result<Self, ParquetError> {
        for (seq, path) in list_parts(&self.table_dir)? {
            if seq >= next_seq {
                tracing::info!(
                    "removing {} (written after the last commit)",
                    path.display()
                );
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        for date_dir in sorted_entries(&self.table_dir)? {
            for p in sorted_entries(&date_dir).unwrap_or_default() {
                let is_tmp = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".part-") && n.ends_with(".tmp"));
                if is_tmp {
                    fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
        }
        self.next_seq = next_seq;
        self.buffer = rows;
        Ok(self)
    }

    pub fn table_dir(&self) -> &Path {
        &self.table_dir
    }

    /// Sequence number the next non-empty flush will use in its file names.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn push(&mut self, row: R) {
        self.buffer.push(row);
    }

    /// Rows buffered since the last flush.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Writes every buffered row, one file per date partition, and clears the buffer. An empty
    /// buffer writes nothing and does not consume a sequence number.
    ///
    /// On error, the rows of partitions not yet written stay buffered (a later flush writes
    /// them under a new sequence number); partitions written before the error are complete
    /// files and are not written again.
    pub fn flush(&mut self) -> Result<FlushStats, ParquetError> {
        let mut stats = FlushStats::default();
        if self.buffer.is_empty() {
            return Ok(stats);
        }
        // Consumed even if the flush fails half-way: some partitions may already hold it.
        let seq = self.next_seq;
        self.next_seq += 1;

        let mut parts: BTreeMap<String, Vec<R>> = BTreeMap::new();
        for row in self.buffer.drain(..) {
            parts
                .entry(date_string(row.partition_time()))
                .or_default()
                .push(row);
        }
        let mut parts = parts.into_iter();
        while let Some((date, mut rows)) = parts.next() {
            rows.sort_by(R::sort_cmp);
            match self.write_partition(&date, seq, &rows) {
                Ok((path, bytes)) => {
                    stats.files.push(path);
                    stats.rows += rows.len();
                    stats.bytes += bytes;
                }
                Err(e) => {
                    self.buffer.extend(rows);
                    self.buffer.extend(parts.flat_map(|(_, rows)| rows));
                    return Err(e);
                }
            }
        }
        Ok(stats)
    }

    /// Writes one sorted partition atomically; returns its final path and size.
    fn write_partition(
        &self,
        date: &str,
        seq: u64,
        rows: &[R],
    ) -> Result<(PathBuf, u64), ParquetError> {
        // Convert first: a value that cannot be written must not leave files behind.
        let batch = R::to_batch(rows)?;
        let dir = self.table_dir.join(format!("date={date}"));
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name = format!("part-{seq:06}.parquet");
        let path = dir.join(&name);
        if path.try_exists().map_err(io_err(&path))? {
            return Err(ParquetError::Exists(path));
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        let bytes = match write_file(&tmp, &batch) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // The rename (and a new date directory) are durable only once their parents are synced.
        sync_dir(&dir)?;
        sync_dir(&self.table_dir)?;
        Ok((path, bytes))
    }
}

fn write_file(path: &Path, batch: &RecordBatch) -> Result<u64, ParquetError> {
    let file = File::create(path).map_err(io_err(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    writer.write(batch)?;
    let file = writer.into_inner()?;
    file.sync_all().map_err(io_err(path))?;
    Ok(file.metadata().map_err(io_err(path))?.len())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), ParquetError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), ParquetError> {
    Ok(())
}

/// `(seq, path)` of every `part-N.parquet` under `table_dir/date=*/`, in (date, seq) order.
/// A missing table directory has no parts.
fn list_parts(table_dir: &Path) -> Result<Vec<(u64, PathBuf)>, ParquetError> {
    let mut out = Vec::new();
    for date_dir in sorted_entries(table_dir)? {
        let is_partition = date_dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("date="));
        if !is_partition || !date_dir.is_dir() {
            continue;
        }
        let mut parts: Vec<(u64, PathBuf)> = sorted_entries(&date_dir)?
            .into_iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let seq = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
                Some((seq.parse().ok()?, p))
            })
            .collect();
        // Numeric, not lexical: names widen past 999999.
        parts.sort();
        out.extend(parts);
    }
    Ok(out)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ParquetError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(io_err(dir))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// Reads every part file of table `R` under `out_dir`, in (date, sequence) order. Hidden
/// temporary files are ignored; a missing table reads as empty.
pub fn read_table<R: ParquetRow>(out_dir: &Path) -> Result<Vec<R>, ParquetError> {
    let mut rows = Vec::new();
    for (_, path) in list_parts(&out_dir.join(R::TABLE))? {
        let file = File::open(&path).map_err(io_err(&path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        for batch in reader {
            rows.extend(R::from_batch(&batch?, &path)?);
        }
    }
    Ok(rows)
}

/// All sessions under `out_dir/sessions/`. Money comes back at scale 4.
pub fn read_sessions(out_dir: &Path) -> Result<Vec<SessionRecord>, ParquetError> {
    read_table(out_dir)
}

/// All charging periods under `out_dir/charging_periods/`.
pub fn read_charging_periods(out_dir: &Path) -> Result<Vec<ChargingPeriodRow>, ParquetError> {
    read_table(out_dir)
}

/// All revenue rows under `out_dir/revenue/`. Money comes back at scale 4.
pub fn read_revenue(out_dir: &Path) -> Result<Vec<RevenueRow>, ParquetError> {
    read_table(out_dir)
}

/// All health rows under `out_dir/health/`.
pub fn read_health(out_dir: &Path) -> Result<Vec<HealthRow>, ParquetError> {
    read_table(out_dir)
}

/// All uptime rows under `out_dir/uptime/`.
pub fn read_uptime(out_dir: &Path) -> Result<Vec<UptimeRow>, ParquetError> {
    read_table(out_dir)
}

/// All outage records under `out_dir/outages/`.
pub fn read_outages(out_dir: &Path) -> Result<Vec<OutageRecord>, ParquetError> {
    read_table(out_dir)
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn money_type() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE as i8)
}

/// The unscaled DECIMAL(18,4) value of `value`, exactly.
fn money_to_unscaled(column: &'static str, value: Money) -> Result<i128, ParquetError> {
    let rounded = value.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero);
    if rounded != value {
        return Err(ParquetError::DecimalInexact { column, value });
    }
    // After rounding the scale is at most 4, and a 96-bit mantissa times 10^4 fits in i128.
    let unscaled = rounded.mantissa() * 10i128.pow(MONEY_SCALE - rounded.scale());
    if unscaled.abs() >= MONEY_LIMIT {
        return Err(ParquetError::DecimalOverflow { column, value });
    }
    Ok(unscaled)
}

fn ts_col(values: impl Iterator<Item = Millis>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn money_col(
    column: &'static str,
    values: impl Iterator<Item = Money>,
) -> Result<ArrayRef, ParquetError> {
    let unscaled = values
        .map(|v| money_to_unscaled(column, v))
        .collect::<Result<Vec<i128>, _>>()?;
    Ok(Arc::new(
        Decimal128Array::from(unscaled)
            .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE as i8)?,
    ))
}

fn str_col<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_str_col<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn i64_col(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

fn f64_col(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

/// A `u32` (connector id, period index) as an Int32 column value.
fn u32_to_i32(column: &'static str, v: u32) -> Result<i32, ParquetError> {
    i32::try_from(v).map_err(|_| ParquetError::OutOfRange {
        column,
        value: v.into(),
    })
}

/// Typed, null-checked access to the columns of a batch being read back.
struct Columns<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
}

impl<'a> Columns<'a> {
    /// Checks that the batch has every column of `schema` with its exact type (a DECIMAL of
    /// another scale would otherwise be misread).
    fn new(batch: &'a RecordBatch, path: &'a Path, schema: &Schema) -> Result<Self, ParquetError> {
        let cols = Columns { batch, path };
        for field in schema.fields() {
            let col = cols.raw(field.name())?;
            if col.data_type() != field.data_type() {
                return Err(cols.error(format!(
                    "column {} is {}, expected {}",
                    field.name(),
                    col.data_type(),
                    field.data_type()
                )));
            }
            if !field.is_nullable() && col.null_count() > 0 {
                return Err(cols.error(format!("column {} has nulls", field.name())));
            }
        }
        Ok(cols)
    }

    fn error(&self, detail: String) -> ParquetError {
        ParquetError::Schema {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    fn raw(&self, name: &str) -> Result<&'a ArrayRef, ParquetError> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| self.error(format!("missing column {name}")))
    }

    fn get<T: Array + 'static>(&self, name: &str) -> Result<&'a T, ParquetError> {
        self.raw(name)?
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| self.error(format!("column {name} has an unexpected array type")))
    }

    fn strs(&self, name: &str) -> Result<Vec<Arc<str>>, ParquetError> {
        Ok(self
            .get::<StringArray>(name)?
            .iter()
            .map(|s| Arc::from(s.unwrap_or_default()))
            .collect())
    }

    fn money(&self, name: &str) -> Result<Vec<Money>, ParquetError> {
        self.get::<Decimal128Array>(name)?
            .values()
            .iter()
            .map(|&v| {
                Decimal::try_from_i128_with_scale(v, MONEY_SCALE)
                    .map_err(|e| self.error(format!("column {name}: {e}")))
            })
            .collect()
    }

    /// A nullable Utf8 column.
    fn opt_strs(&self, name: &str) -> Result<Vec<Option<Arc<str>>>, ParquetError> {
        Ok(self
            .get::<StringArray>(name)?
            .iter()
            .map(|s| s.map(Arc::from))
            .collect())
    }

    /// The money columns `{prefix}_excl_vat` and `{prefix}_incl_vat`.
    fn cost_pairs(&self, prefix: &str) -> Result<Vec<CostPair>, ParquetError> {
        let excl = self.money(&format!("{prefix}_excl_vat"))?;
        let incl = self.money(&format!("{prefix}_incl_vat"))?;
        Ok(excl
            .into_iter()
            .zip(incl)
            .map(|(excl_vat, incl_vat)| CostPair { excl_vat, incl_vat })
            .collect())
    }

    /// An Int32 value of a `u32` field (connector id, period index).
    fn u32(&self, name: &str, v: i32) -> Result<u32, ParquetError> {
        u32::try_from(v).map_err(|_| self.error(format!("column {name}: negative value {v}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

impl ParquetRow for SessionRecord {
    const TABLE: &'static str = "sessions";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("charge_point_id", DataType::Utf8),
            field("connector_id", DataType::Int32),
            field("site_id", DataType::Utf8),
            field("transaction_id", DataType::Utf8),
            field("id_tag", DataType::Utf8),
            field("start_time", timestamp_type()),
            field("end_time", timestamp_type()),
            field("energy_wh", DataType::Int64),
            field("energy_source", DataType::Utf8),
            field("stop_reason", DataType::Utf8),
            field("payment_method", DataType::Utf8),
            field("tariff_id", DataType::Utf8),
            field("currency", DataType::Utf8),
            field("total_excl_vat", money_type()),
            field("vat", money_type()),
            field("total_incl_vat", money_type()),
            field("late", DataType::Boolean),
            field("account", DataType::Utf8),
            Field::new("plan_id", DataType::Utf8, true),
            field("charging_ms", DataType::Int64),
            field("parking_ms", DataType::Int64),
            field("energy_cost_excl_vat", money_type()),
            field("energy_cost_incl_vat", money_type()),
            field("time_cost_excl_vat", money_type()),
            field("time_cost_incl_vat", money_type()),
            field("parking_cost_excl_vat", money_type()),
            field("parking_cost_incl_vat", money_type()),
            field("fixed_cost_excl_vat", money_type()),
            field("fixed_cost_incl_vat", money_type()),
            field("included_energy_wh", DataType::Int64),
            field("discount_excl_vat", money_type()),
            field("discount_incl_vat", money_type()),
            field("payment_fee", money_type()),
            field("net", money_type()),
        ]))
    }

    fn partition_time(&self) -> Millis {
        self.end_time
    }

    /// Every written column takes part; `periods` (see `charging_periods/`) and `meter` are
    /// not written.
    fn sort_cmp(&self, o: &Self) -> Ordering {
        /// The money columns after `total_incl_vat`, in column order.
        fn money(s: &SessionRecord) -> [Money; 12] {
            [
                s.energy_cost.excl_vat,
                s.energy_cost.incl_vat,
                s.time_cost.excl_vat,
                s.time_cost.incl_vat,
                s.parking_cost.excl_vat,
                s.parking_cost.incl_vat,
                s.fixed_cost.excl_vat,
                s.fixed_cost.incl_vat,
                s.discount.excl_vat,
                s.discount.incl_vat,
                s.payment_fee,
                s.net,
            ]
        }
        (
            self.end_time,
            &self.charge_point_id,
            self.connector_id,
            &self.transaction_id,
        )
            .cmp(&(
                o.end_time,
                &o.charge_point_id,
                o.connector_id,
                &o.transaction_id,
            ))
            .then_with(|| {
                (
                    &self.site_id,
                    &self.id_tag,
                    self.start_time,
                    self.energy_wh,
                    self.energy_source.as_str(),
                    &self.stop_reason,
                    &self.payment_method,
                    &self.tariff_id,
                    &self.currency,
                )
                    .cmp(&(
                        &o.site_id,
                        &o.id_tag,
                        o.start_time,
                        o.energy_wh,
                        o.energy_source.as_str(),
                        &o.stop_reason,
                        &o.payment_method,
                        &o.tariff_id,
                        &o.currency,
                    ))
            })
            .then_with(|| {
                (
                    self.total_excl_vat,
                    self.vat,
                    self.total_incl_vat,
                    self.late,
                    &self.account,
                    &self.plan_id,
                    self.charging_ms,
                    self.parking_ms,
                    self.included_energy_wh,
                )
                    .cmp(&(
                        o.total_excl_vat,
                        o.vat,
                        o.total_incl_vat,
                        o.late,
                        &o.account,
                        &o.plan_id,
                        o.charging_ms,
                        o.parking_ms,
                        o.included_energy_wh,
                    ))
            })
            .then_with(|| money(self).cmp(&money(o)))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| u32_to_i32("connector_id", r.connector_id))
            .collect::<Result<Vec<i32>, _>>()?;
        let columns: Vec<ArrayRef> = vec![
            str_col(rows.iter().map(|r| &*r.charge_point_id)),
            Arc::new(Int32Array::from(connector_ids)),
            str_col(rows.iter().map(|r| &*r.site_id)),
            str_col(rows.iter().map(|r| r.transaction_id.as_str())),
            str_col(rows.iter().map(|r| &*r.id_tag)),
            ts_col(rows.iter().map(|r| r.start_time)),
            ts_col(rows.iter().map(|r| r.end_time)),
            i64_col(rows.iter().map(|r| r.energy_wh)),
            str_col(rows.iter().map(|r| r.energy_source.as_str())),
            str_col(rows.iter().map(|r| &*r.stop_reason)),
            str_col(rows.iter().map(|r| &*r.payment_method)),
            str_col(rows.iter().map(|r| &*r.tariff_id)),
            str_col(rows.iter().map(|r| &*r.currency)),
            money_col("total_excl_vat", rows.iter().map(|r| r.total_excl_vat))?,
            money_col("vat", rows.iter().map(|r| r.vat))?,
            money_col("total_incl_vat", rows.iter().map(|r| r.total_incl_vat))?,
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.late).collect::<Vec<bool>>(),
            )),
            str_col(rows.iter().map(|r| &*r.account)),
            opt_str_col(rows.iter().map(|r| r.plan_id.as_deref())),
            i64_col(rows.iter().map(|r| r.charging_ms)),
            i64_col(rows.iter().map(|r| r.parking_ms)),
            money_col(
                "energy_cost_excl_vat",
                rows.iter().map(|r| r.energy_cost.excl_vat),
            )?,
            money_col(
                "energy_cost_incl_vat",
                rows.iter().map(|r| r.energy_cost.incl_vat),
            )?,
            money_col(
                "time_cost_excl_vat",
                rows.iter().map(|r| r.time_cost.excl_vat),
            )?,
            money_col(
                "time_cost_incl_vat",
                rows.iter().map(|r| r.time_cost.incl_vat),
            )?,
            money_col(
                "parking_cost_excl_vat",
                rows.iter().map(|r| r.parking_cost.excl_vat),
            )?,
            money_col(
                "parking_cost_incl_vat",
                rows.iter().map(|r| r.parking_cost.incl_vat),
            )?,
            money_col(
                "fixed_cost_excl_vat",
                rows.iter().map(|r| r.fixed_cost.excl_vat),
            )?,
            money_col(
                "fixed_cost_incl_vat",
                rows.iter().map(|r| r.fixed_cost.incl_vat),
            )?,
            i64_col(rows.iter().map(|r| r.included_energy_wh)),
            money_col(
                "discount_excl_vat",
                rows.iter().map(|r| r.discount.excl_vat),
            )?,
            money_col(
                "discount_incl_vat",
                rows.iter().map(|r| r.discount.incl_vat),
            )?,
            money_col("payment_fee", rows.iter().map(|r| r.payment_fee))?,
            money_col("net", rows.iter().map(|r| r.net))?,
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError> {
        let c = Columns::new(batch, path, &Self::schema())?;
        let charge_point_id = c.strs("charge_point_id")?;
        let connector_id = c.get::<Int32Array>("connector_id")?;
        let site_id = c.strs("site_id")?;
        let transaction_id = c.strs("transaction_id")?;
        let id_tag = c.strs("id_tag")?;
        let start_time = c.get::<TimestampMillisecondArray>("start_time")?;
        let end_time = c.get::<TimestampMillisecondArray>("end_time")?;
        let energy_wh = c.get::<Int64Array>("energy_wh")?;
        let energy_source = c.get::<StringArray>("energy_source")?;
        let stop_reason = c.strs("stop_reason")?;
        let payment_method = c.strs("payment_method")?;
        let tariff_id = c.strs("tariff_id")?;
        let currency = c.strs("currency")?;
        let total_excl_vat = c.money("total_excl_vat")?;
        let vat = c.money("vat")?;
        let total_incl_vat = c.money("total_incl_vat")?;
        let late = c.get::<BooleanArray>("late")?;
        let account = c.strs("account")?;
        let plan_id = c.opt_strs("plan_id")?;
        let charging_ms = c.get::<Int64Array>("charging_ms")?;
        let parking_ms = c.get::<Int64Array>("parking_ms")?;
        let energy_cost = c.cost_pairs("energy_cost")?;
        let time_cost = c.cost_pairs("time_cost")?;
        let parking_cost = c.cost_pairs("parking_cost")?;
        let fixed_cost = c.cost_pairs("fixed_cost")?;
        let included_energy_wh = c.get::<Int64Array>("included_energy_wh")?;
        let discount = c.cost_pairs("discount")?;
        let payment_fee = c.money("payment_fee")?;
        let net = c.money("net")?;

        (0..batch.num_rows())
            .map(|i| {
                let energy_source = match energy_source.value(i) {
                    "registers" => EnergySource::Registers,
                    "samples" => EnergySource::Samples,
                    other => return Err(c.error(format!("unknown energy_source {other:?}"))),
                };
                Ok(SessionRecord {
                    charge_point_id: charge_point_id[i].clone(),
                    connector_id: c.u32("connector_id", connector_id.value(i))?,
                    site_id: site_id[i].clone(),
                    transaction_id: transaction_id[i].to_string(),
                    id_tag: id_tag[i].clone(),
                    start_time: start_time.value(i),
                    end_time: end_time.value(i),
                    energy_wh: energy_wh.value(i),
                    energy_source,
                    stop_reason: stop_reason[i].clone(),
                    payment_method: payment_method[i].clone(),
                    tariff_id: tariff_id[i].clone(),
                    currency: currency[i].clone(),
                    total_excl_vat: total_excl_vat[i],
                    vat: vat[i],
                    total_incl_vat: total_incl_vat[i],
                    late: late.value(i),
                    account: account[i].clone(),
                    plan_id: plan_id[i].clone(),
                    charging_ms: charging_ms.value(i),
                    parking_ms: parking_ms.value(i),
                    energy_cost: energy_cost[i],
                    time_cost: time_cost[i],
                    parking_cost: parking_cost[i],
                    fixed_cost: fixed_cost[i],
                    included_energy_wh: included_energy_wh.value(i),
                    discount: discount[i],
                    payment_fee: payment_fee[i],
                    net: net[i],
                    // Not columns: the periods are the `charging_periods/` table, and the
                    // meter facts are for the revenue-leakage check only.
                    periods: Vec::new(),
                    audit: AuditFacts::default(),
                })
            })
            .collect()
    }
}

impl ParquetRow for RevenueRow {
    const TABLE: &'static str = "revenue";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("window_start", timestamp_type()),
            field("window_end", timestamp_type()),
            field("site_id", DataType::Utf8),
            field("charge_point_id", DataType::Utf8),
            field("payment_method", DataType::Utf8),
            field("tariff_id", DataType::Utf8),
            field("currency", DataType::Utf8),
            field("sessions", DataType::Int64),
            field("energy_wh", DataType::Int64),
            field("total_excl_vat", money_type()),
            field("vat", money_type()),
            field("total_incl_vat", money_type()),
            field("payment_fees", money_type()),
            field("net", money_type()),
            field("revision", DataType::Int32),
        ]))
    }

    fn partition_time(&self) -> Millis {
        self.window_start
    }

    fn sort_cmp(&self, o: &Self) -> Ordering {
        (
            self.window_start,
            &self.site_id,
            &self.charge_point_id,
            &self.payment_method,
            &self.tariff_id,
            &self.currency,
            self.revision,
        )
            .cmp(&(
                o.window_start,
                &o.site_id,
                &o.charge_point_id,
                &o.payment_method,
                &o.tariff_id,
                &o.currency,
                o.revision,
            ))
            .then_with(|| {
                (
                    self.window_end,
                    self.sessions,
                    self.energy_wh,
                    self.total_excl_vat,
                    self.vat,
                    self.total_incl_vat,
                    self.payment_fees,
                    self.net,
                )
                    .cmp(&(
                        o.window_end,
                        o.sessions,
                        o.energy_wh,
                        o.total_excl_vat,
                        o.vat,
                        o.total_incl_vat,
                        o.payment_fees,
                        o.net,
                    ))
            })
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let columns: Vec<ArrayRef> = vec![
            ts_col(rows.iter().map(|r| r.window_start)),
            ts_col(rows.iter().map(|r| r.window_end)),
            str_col(rows.iter().map(|r| &*r.site_id)),
            str_col(rows.iter().map(|r| &*r.charge_point_id)),
            str_col(rows.iter().map(|r| &*r.payment_method)),
            str_col(rows.iter().map(|r| &*r.tariff_id)),
            str_col(rows.iter().map(|r| &*r.currency)),
            i64_col(rows.iter().map(|r| r.sessions)),
            i64_col(rows.iter().map(|r| r.energy_wh)),
            money_col("total_excl_vat", rows.iter().map(|r| r.total_excl_vat))?,
            money_col("vat", rows.iter().map(|r| r.vat))?,
            money_col("total_incl_vat", rows.iter().map(|r| r.total_incl_vat))?,
            money_col("payment_fees", rows.iter().map(|r| r.payment_fees))?,
            money_col("net", rows.iter().map(|r| r.net))?,
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.revision),
            )),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError> {
        let c = Columns::new(batch, path, &Self::schema())?;
        let window_start = c.get::<TimestampMillisecondArray>("window_start")?;
        let window_end = c.get::<TimestampMillisecondArray>("window_end")?;
        let site_id = c.strs("site_id")?;
        let charge_point_id = c.strs("charge_point_id")?;
        let payment_method = c.strs("payment_method")?;
        let tariff_id = c.strs("tariff_id")?;
        let currency = c.strs("currency")?;
        let sessions = c.get::<Int64Array>("sessions")?;
        let energy_wh = c.get::<Int64Array>("energy_wh")?;
        let total_excl_vat = c.money("total_excl_vat")?;
        let vat = c.money("vat")?;
        let total_incl_vat = c.money("total_incl_vat")?;
        let payment_fees = c.money("payment_fees")?;
        let net = c.money("net")?;
        let revision = c.get::<Int32Array>("revision")?;

        Ok((0..batch.num_rows())
            .map(|i| RevenueRow {
                window_start: window_start.value(i),
                window_end: window_end.value(i),
                site_id: site_id[i].clone(),
                charge_point_id: charge_point_id[i].clone(),
                payment_method: payment_method[i].clone(),
                tariff_id: tariff_id[i].clone(),
                currency: currency[i].clone(),
                sessions: sessions.value(i),
                energy_wh: energy_wh.value(i),
                total_excl_vat: total_excl_vat[i],
                vat: vat[i],
                total_incl_vat: total_incl_vat[i],
                payment_fees: payment_fees[i],
                net: net[i],
                revision: revision.value(i),
            })
            .collect())
    }
}

impl ParquetRow for HealthRow {
    const TABLE: &'static str = "health";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("window_start", timestamp_type()),
            field("window_end", timestamp_type()),
            field("level", DataType::Utf8),
            field("site_id", DataType::Utf8),
            field("charge_point_id", DataType::Utf8),
            Field::new("connector_id", DataType::Int32, true),
            field("score", DataType::Float64),
            field("availability", DataType::Float64),
            field("heartbeat_regularity", DataType::Float64),
            field("session_success", DataType::Float64),
            field("error_free", DataType::Float64),
            field("anomaly_free", DataType::Float64),
            field("open_anomalies", DataType::Int64),
            Field::new("main_cause", DataType::Utf8, true),
        ]))
    }

    fn partition_time(&self) -> Millis {
        self.window_start
    }

    fn sort_cmp(&self, o: &Self) -> Ordering {
        // `level` orders as the enum does: connector, charger, site.
        (
            self.window_start,
            self.level,
            &self.site_id,
            &self.charge_point_id,
            self.connector_id,
        )
            .cmp(&(
                o.window_start,
                o.level,
                &o.site_id,
                &o.charge_point_id,
                o.connector_id,
            ))
            .then(self.window_end.cmp(&o.window_end))
            .then(self.score.total_cmp(&o.score))
            .then(self.availability.total_cmp(&o.availability))
            .then(self.heartbeat_regularity.total_cmp(&o.heartbeat_regularity))
            .then(self.session_success.total_cmp(&o.session_success))
            .then(self.error_free.total_cmp(&o.error_free))
            .then(self.anomaly_free.total_cmp(&o.anomaly_free))
            .then(self.open_anomalies.cmp(&o.open_anomalies))
            .then(self.main_cause.cmp(&o.main_cause))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| {
                r.connector_id
                    .map(|c| u32_to_i32("connector_id", c))
                    .transpose()
            })
            .collect::<Result<Vec<Option<i32>>, _>>()?;
        let columns: Vec<ArrayRef> = vec![
            ts_col(rows.iter().map(|r| r.window_start)),
            ts_col(rows.iter().map(|r| r.window_end)),
            str_col(rows.iter().map(|r| r.level.as_str())),
            str_col(rows.iter().map(|r| &*r.site_id)),
            str_col(rows.iter().map(|r| &*r.charge_point_id)),
            Arc::new(Int32Array::from(connector_ids)),
            f64_col(rows.iter().map(|r| r.score)),
            f64_col(rows.iter().map(|r| r.availability)),
            f64_col(rows.iter().map(|r| r.heartbeat_regularity)),
            f64_col(rows.iter().map(|r| r.session_success)),
            f64_col(rows.iter().map(|r| r.error_free)),
            f64_col(rows.iter().map(|r| r.anomaly_free)),
            i64_col(rows.iter().map(|r| r.open_anomalies)),
            opt_str_col(
                rows.iter()
                    .map(|r| r.main_cause.map(HealthComponent::as_str)),
            ),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError> {
        let c = Columns::new(batch, path, &Self::schema())?;
        let window_start = c.get::<TimestampMillisecondArray>("window_start")?;
        let window_end = c.get::<TimestampMillisecondArray>("window_end")?;
        let level = c.get::<StringArray>("level")?;
        let site_id = c.strs("site_id")?;
        let charge_point_id = c.strs("charge_point_id")?;
        let connector_id = c.get::<Int32Array>("connector_id")?;
        let score = c.get::<Float64Array>("score")?;
        let availability = c.get::<Float64Array>("availability")?;
        let heartbeat_regularity = c.get::<Float64Array>("heartbeat_regularity")?;
        let session_success = c.get::<Float64Array>("session_success")?;
        let error_free = c.get::<Float64Array>("error_free")?;
        let anomaly_free = c.get::<Float64Array>("anomaly_free")?;
        let open_anomalies = c.get::<Int64Array>("open_anomalies")?;
        let main_cause = c.get::<StringArray>("main_cause")?;

        (0..batch.num_rows())
            .map(|i| {
                let level = match level.value(i) {
                    "connector" => HealthLevel::Connector,
                    "charger" => HealthLevel::Charger,
                    "site" => HealthLevel::Site,
                    other => return Err(c.error(format!("unknown level {other:?}"))),
                };
                let connector_id = if connector_id.is_null(i) {
                    None
                } else {
                    Some(c.u32("connector_id", connector_id.value(i))?)
                };
                let main_cause = if main_cause.is_null(i) {
                    None
                } else {
                    let name = main_cause.value(i);
                    match HealthComponent::ALL
                        .into_iter()
                        .find(|h| h.as_str() == name)
                    {
                        Some(h) => Some(h),
                        None => return Err(c.error(format!("unknown main_cause {name:?}"))),
                    }
                };
                Ok(HealthRow {
                    window_start: window_start.value(i),
                    window_end: window_end.value(i),
                    level,
                    site_id: site_id[i].clone(),
                    charge_point_id: charge_point_id[i].clone(),
                    connector_id,
                    score: score.value(i),
                    availability: availability.value(i),
                    heartbeat_regularity: heartbeat_regularity.value(i),
                    session_success: session_success.value(i),
                    error_free: error_free.value(i),
                    anomaly_free: anomaly_free.value(i),
                    open_anomalies: open_anomalies.value(i),
                    main_cause,
                })
            })
            .collect()
    }
}

impl ParquetRow for ChargingPeriodRow {
    const TABLE: &'static str = "charging_periods";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("charge_point_id", DataType::Utf8),
            field("connector_id", DataType::Int32),
            field("transaction_id", DataType::Utf8),
            field("session_end_time", timestamp_type()),
            field("period", DataType::Int32),
            field("start_time", timestamp_type()),
            field("energy_wh", DataType::Int64),
            field("charging_ms", DataType::Int64),
            field("parking_ms", DataType::Int64),
            Field::new("max_power_w", DataType::Float64, true),
        ]))
    }

    /// The session's end, so that its periods share its `date=` partition.
    fn partition_time(&self) -> Millis {
        self.session_end_time
    }

    /// The session's key (as in `sessions/`), the period index, then every other column.
    fn sort_cmp(&self, o: &Self) -> Ordering {
        (
            self.session_end_time,
            &self.charge_point_id,
            self.connector_id,
            &self.transaction_id,
            self.period,
        )
            .cmp(&(
                o.session_end_time,
                &o.charge_point_id,
                o.connector_id,
                &o.transaction_id,
                o.period,
            ))
            .then_with(|| {
                (
                    self.start_time,
                    self.energy_wh,
                    self.charging_ms,
                    self.parking_ms,
                )
                    .cmp(&(o.start_time, o.energy_wh, o.charging_ms, o.parking_ms))
            })
            .then_with(|| match (self.max_power_w, o.max_power_w) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            })
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| u32_to_i32("connector_id", r.connector_id))
            .collect::<Result<Vec<i32>, _>>()?;
        let periods = rows
            .iter()
            .map(|r| u32_to_i32("period", r.period))
            .collect::<Result<Vec<i32>, _>>()?;
        let columns: Vec<ArrayRef> = vec![
            str_col(rows.iter().map(|r| &*r.charge_point_id)),
            Arc::new(Int32Array::from(connector_ids)),
            str_col(rows.iter().map(|r| r.transaction_id.as_str())),
            ts_col(rows.iter().map(|r| r.session_end_time)),
            Arc::new(Int32Array::from(periods)),
            ts_col(rows.iter().map(|r| r.start_time)),
            i64_col(rows.iter().map(|r| r.energy_wh)),
            i64_col(rows.iter().map(|r| r.charging_ms)),
            i64_col(rows.iter().map(|r| r.parking_ms)),
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|r| r.max_power_w)
                    .collect::<Vec<Option<f64>>>(),
            )),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError> {
        let c = Columns::new(batch, path, &Self::schema())?;
        let charge_point_id = c.strs("charge_point_id")?;
        let connector_id = c.get::<Int32Array>("connector_id")?;
        let transaction_id = c.strs("transaction_id")?;
        let session_end_time = c.get::<TimestampMillisecondArray>("session_end_time")?;
        let period = c.get::<Int32Array>("period")?;
        let start_time = c.get::<TimestampMillisecondArray>("start_time")?;
        let energy_wh = c.get::<Int64Array>("energy_wh")?;
        let charging_ms = c.get::<Int64Array>("charging_ms")?;
        let parking_ms = c.get::<Int64Array>("parking_ms")?;
        let max_power_w = c.get::<Float64Array>("max_power_w")?;

        (0..batch.num_rows())
            .map(|i| {
                Ok(ChargingPeriodRow {
                    charge_point_id: charge_point_id[i].clone(),
                    connector_id: c.u32("connector_id", connector_id.value(i))?,
                    transaction_id: transaction_id[i].to_string(),
                    session_end_time: session_end_time.value(i),
                    period: c.u32("period", period.value(i))?,
                    start_time: start_time.value(i),
                    energy_wh: energy_wh.value(i),
                    charging_ms: charging_ms.value(i),
                    parking_ms: parking_ms.value(i),
                    max_power_w: (!max_power_w.is_null(i)).then(|| max_power_w.value(i)),
                })
            })
            .collect()
    }
}

impl ParquetRow for UptimeRow {
    const TABLE: &'static str = "uptime";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("charge_point_id", DataType::Utf8),
            field("site_id", DataType::Utf8),
            field("connector_id", DataType::Int32),
            field("period", DataType::Utf8),
            field("period_start", timestamp_type()),
            field("period_end", timestamp_type()),
            field("minutes", DataType::Float64),
            field("outage_minutes", DataType::Float64),
            field("excluded_minutes", DataType::Float64),
            field("uptime_pct", DataType::Float64),
        ]))
    }

    fn partition_time(&self) -> Millis {
        self.period_start
    }

    /// `period_start`, `period` (day before month), `charge_point_id`, `connector_id`, then
    /// every other column.
    fn sort_cmp(&self, o: &Self) -> Ordering {
        (
            self.period_start,
            self.period,
            &self.charge_point_id,
            self.connector_id,
            &self.site_id,
            self.period_end,
        )
            .cmp(&(
                o.period_start,
                o.period,
                &o.charge_point_id,
                o.connector_id,
                &o.site_id,
                o.period_end,
            ))
            .then(self.minutes.total_cmp(&o.minutes))
            .then(self.outage_minutes.total_cmp(&o.outage_minutes))
            .then(self.excluded_minutes.total_cmp(&o.excluded_minutes))
            .then(self.uptime_pct.total_cmp(&o.uptime_pct))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| u32_to_i32("connector_id", r.connector_id))
            .collect::<Result<Vec<i32>, _>>()?;
        let columns: Vec<ArrayRef> = vec![
            str_col(rows.iter().map(|r| &*r.charge_point_id)),
            str_col(rows.iter().map(|r| &*r.site_id)),
            Arc::new(Int32Array::from(connector_ids)),
            str_col(rows.iter().map(|r| r.period.as_str())),
            ts_col(rows.iter().map(|r| r.period_start)),
            ts_col(rows.iter().map(|r| r.period_end)),
            f64_col(rows.iter().map(|r| r.minutes)),
            f64_col(rows.iter().map(|r| r.outage_minutes)),
            f64_col(rows.iter().map(|r| r.excluded_minutes)),
            f64_col(rows.iter().map(|r| r.uptime_pct)),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError> {
        let c = Columns::new(batch, path, &Self::schema())?;
        let charge_point_id = c.strs("charge_point_id")?;
        let site_id = c.strs("site_id")?;
        let connector_id = c.get::<Int32Array>("connector_id")?;
        let period = c.get::<StringArray>("period")?;
        let period_start = c.get::<TimestampMillisecondArray>("period_start")?;
        let period_end = c.get::<TimestampMillisecondArray>("period_end")?;
        let minutes = c.get::<Float64Array>("minutes")?;
        let outage_minutes = c.get::<Float64Array>("outage_minutes")?;
        let excluded_minutes = c.get::<Float64Array>("excluded_minutes")?;
        let uptime_pct = c.get::<Float64Array>("uptime_pct")?;

        (0..batch.num_rows())
            .map(|i| {
                let period = match period.value(i) {
                    "day" => UptimePeriod::Day,
                    "month" => UptimePeriod::Month,
                    other => return Err(c.error(format!("unknown period {other:?}"))),
                };
                Ok(UptimeRow {
                    charge_point_id: charge_point_id[i].clone(),
                    site_id: site_id[i].clone(),
                    connector_id: c.u32("connector_id", connector_id.value(i))?,
                    period,
                    period_start: period_start.value(i),
                    period_end: period_end.value(i),
                    minutes: minutes.value(i),
                    outage_minutes: outage_minutes.value(i),
                    excluded_minutes: excluded_minutes.value(i),
                    uptime_pct: uptime_pct.value(i),
                })
            })
            .collect()
    }
}

impl ParquetRow for OutageRecord {
    const TABLE: &'static str = "outages";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("id", DataType::Utf8),
            field("charge_point_id", DataType::Utf8),
            field("site_id", DataType::Utf8),
            field("connector_id", DataType::Int32),
            field("start", timestamp_type()),
            field("end", timestamp_type()),
            field("cause", DataType::Utf8),
            field("outage_minutes", DataType::Float64),
            field("excluded_minutes", DataType::Float64),
            field("exclusion", DataType::Utf8),
        ]))
    }

    fn partition_time(&self) -> Millis {
        self.start
    }

    /// `start`, `charge_point_id`, `connector_id`, then every other column.
    fn sort_cmp(&self, o: &Self) -> Ordering {
        (
            self.start,
            &self.charge_point_id,
            self.connector_id,
            &self.id,
            &self.site_id,
            self.end,
            &self.cause,
        )
            .cmp(&(
                o.start,
                &o.charge_point_id,
                o.connector_id,
                &o.id,
                &o.site_id,
                o.end,
                &o.cause,
            ))
            .then(self.outage_minutes.total_cmp(&o.outage_minutes))
            .then(self.excluded_minutes.total_cmp(&o.excluded_minutes))
            .then(self.exclusion.cmp(&o.exclusion))
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| u32_to_i32("connector_id", r.connector_id))
            .collect::<Result<Vec<i32>, _>>()?;
        let columns: Vec<ArrayRef> = vec![
            str_col(rows.iter().map(|r| r.id.as_str())),
            str_col(rows.iter().map(|r| &*r.charge_point_id)),
            str_col(rows.iter().map(|r| &*r.site_id)),
            Arc::new(Int32Array::from(connector_ids)),
            ts_col(rows.iter().map(|r| r.start)),
            ts_col(rows.iter().map(|r| r.end)),
            str_col(rows.iter().map(|r| &*r.cause)),
            f64_col(rows.iter().map(|r| r.outage_minutes)),
            f64_col(rows.iter().map(|r| r.excluded_minutes)),
            str_col(rows.iter().map(|r| &*r.exclusion)),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }

    fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Vec<Self>, ParquetError> {
        let c = Columns::new(batch, path, &Self::schema())?;
        let id = c.strs("id")?;
        let charge_point_id = c.strs("charge_point_id")?;
        let site_id = c.strs("site_id")?;
        let connector_id = c.get::<Int32Array>("connector_id")?;
        let start = c.get::<TimestampMillisecondArray>("start")?;
        let end = c.get::<TimestampMillisecondArray>("end")?;
        let cause = c.strs("cause")?;
        let outage_minutes = c.get::<Float64Array>("outage_minutes")?;
        let excluded_minutes = c.get::<Float64Array>("excluded_minutes")?;
        let exclusion = c.strs("exclusion")?;

        (0..batch.num_rows())
            .map(|i| {
                Ok(OutageRecord {
                    id: id[i].to_string(),
                    charge_point_id: charge_point_id[i].clone(),
                    site_id: site_id[i].clone(),
                    connector_id: c.u32("connector_id", connector_id.value(i))?,
                    start: start.value(i),
                    end: end.value(i),
                    cause: cause[i].clone(),
                    outage_minutes: outage_minutes.value(i),
                    excluded_minutes: excluded_minutes.value(i),
                    exclusion: exclusion[i].clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PeriodRecord;
    use crate::time::parse_rfc3339;
    use std::str::FromStr;

    /// A fresh directory under the system temp dir, unique per process and test.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("evflow-parquet-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn ts(s: &str) -> Millis {
        parse_rfc3339(s).expect("test timestamp")
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("test decimal")
    }

    fn cost(excl: &str, incl: &str) -> CostPair {
        CostPair {
            excl_vat: dec(excl),
            incl_vat: dec(incl),
        }
    }

    /// A session with two charging periods (the second without a power sample).
    fn session(cp: &str, end: &str, tx: &str, excl: &str, vat: &str, incl: &str) -> SessionRecord {
        let start = ts(end) - 3_600_000;
        let fee = dec("0.25");
        SessionRecord {
            charge_point_id: Arc::from(cp),
            connector_id: 1,
            site_id: Arc::from("site-1"),
            transaction_id: tx.to_string(),
            id_tag: Arc::from("TAG"),
            start_time: start,
            end_time: ts(end),
            energy_wh: 12_345,
            energy_source: EnergySource::Registers,
            stop_reason: Arc::from("Local"),
            payment_method: Arc::from("rfid"),
            tariff_id: Arc::from("standard"),
            currency: Arc::from("EUR"),
            total_excl_vat: dec(excl),
            vat: dec(vat),
            total_incl_vat: dec(incl),
            late: false,
            account: Arc::from("ACC-1"),
            plan_id: Some(Arc::from("plan-basic")),
            charging_ms: 3_000_000,
            parking_ms: 600_000,
            energy_cost: cost("8.1234", "9.6668"),
            time_cost: cost("1.5", "1.785"),
            parking_cost: cost("0.75", "0.8925"),
            fixed_cost: cost("0.5", "0.595"),
            included_energy_wh: 2_000,
            discount: cost("1.3164", "1.5665"),
            payment_fee: fee,
            net: dec(excl) - fee,
            periods: vec![
                PeriodRecord {
                    start_time: start,
                    energy_wh: 10_000,
                    charging_ms: 2_400_000,
                    parking_ms: 0,
                    max_power_w: Some(22_080.5),
                },
                PeriodRecord {
                    start_time: start + 2_400_000,
                    energy_wh: 2_345,
                    charging_ms: 600_000,
                    parking_ms: 600_000,
                    max_power_w: None,
                },
            ],
            audit: AuditFacts {
                register_wh: Some(12_345),
                samples_wh: Some(12_300),
                time_zone: Some("Europe/Berlin".into()),
            },
        }
    }

    /// What reading a written session back gives: no periods, no meter facts.
    fn as_read(s: &SessionRecord) -> SessionRecord {
        SessionRecord {
            periods: Vec::new(),
            audit: AuditFacts::default(),
            ..s.clone()
        }
    }

    fn revenue(start: &str, site: &str, revision: i32, excl: &str) -> RevenueRow {
        RevenueRow {
            window_start: ts(start),
            window_end: ts(start) + 3_600_000,
            site_id: Arc::from(site),
            charge_point_id: Arc::from("CP-1"),
            payment_method: Arc::from("app"),
            tariff_id: Arc::from("standard"),
            currency: Arc::from("EUR"),
            sessions: 3,
            energy_wh: 45_000,
            total_excl_vat: dec(excl),
            vat: dec("0.0001"),
            total_incl_vat: dec(excl) + dec("0.0001"),
            payment_fees: dec("0.75"),
            net: dec(excl) - dec("0.75"),
            revision,
        }
    }

    /// Every file name under `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else {
                    let rel = path.strip_prefix(base).expect("prefix");
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn sessions_round_trip_with_exact_decimals() {
        let dir = scratch("sessions-rt");
        let mut rows = vec![
            session(
                "CP-2",
                "2026-01-05T10:00:00Z",
                "7",
                "12.3456",
                "2.3457",
                "14.6913",
            ),
            session("CP-1", "2026-01-05T10:00:00Z", "8", "0.0001", "0", "0.0001"),
            session(
                "CP-1",
                "2026-01-05T09:00:00Z",
                "abc-2.0.1",
                "99999999999999.9999",
                "-99999999999999.9999",
                "0.5",
            ),
            session(
                "CP-3",
                "2026-01-05T11:00:00Z",
                "9",
                "-12.3456",
                "1.20",
                "-11.1456",
            ),
        ];
        rows[1].energy_source = EnergySource::Samples;
        rows[1].late = true;
        rows[1].plan_id = None;
        rows[1].account = Arc::from("TAG");
        rows[1].included_energy_wh = 0;
        rows[1].discount = CostPair::default();
        rows[1].periods.clear();
        rows[2].connector_id = 2;
        rows[2].charging_ms = 0;
        rows[2].parking_ms = 3_600_000;
        rows[2].energy_cost = cost("-0.0001", "99999999999999.9999");
        rows[2].payment_fee = dec("-99999999999999.9999");
        rows[3].time_cost = cost("0", "0");
        rows[3].parking_cost = cost("2.25", "2.6775");
        rows[3].fixed_cost = cost("-1", "-1.19");
        rows[3].net = dec("-12.5956");
        // Equal to rows[1] but for plan_id and net: the columns after the key decide.
        let mut planned = rows[1].clone();
        planned.plan_id = Some(Arc::from("plan-x"));
        planned.net = dec("-0.2499");
        rows.push(planned);

        let mut w = sessions_writer(&dir);
        for r in rows.iter().rev() {
            w.push(r.clone());
        }
        let stats = w.flush().expect("flush");
        assert_eq!(stats.rows, 5);
        assert_eq!(stats.files.len(), 1);
        assert!(w.is_empty());

        let back = read_sessions(&dir).expect("read");
        rows.sort_by(SessionRecord::sort_cmp);
        assert_eq!(back, rows.iter().map(as_read).collect::<Vec<_>>());
        assert!(back.iter().all(|s| s.periods.is_empty()));
        let schema = SessionRecord::schema();
        assert!(schema.field_with_name("periods").is_err());
        assert!(schema
            .field_with_name("plan_id")
            .expect("plan_id")
            .is_nullable());
        assert_eq!(
            schema.fields().iter().filter(|f| f.is_nullable()).count(),
            1,
            "only plan_id is nullable"
        );
        // Exact, not merely equal as numbers after some rounding.
        assert_eq!(back[0].total_excl_vat.to_string(), "99999999999999.9999");
        assert_eq!(back[0].energy_cost.excl_vat.to_string(), "-0.0001");
        assert_eq!(
            back[0].energy_cost.incl_vat.to_string(),
            "99999999999999.9999"
        );
        assert_eq!(back[0].payment_fee.to_string(), "-99999999999999.9999");
        assert_eq!(back[1].total_excl_vat.to_string(), "0.0001");
        assert_eq!(back[1].plan_id, None);
        assert_eq!(back[1].discount.incl_vat.to_string(), "0.0000");
        assert_eq!(back[2].plan_id.as_deref(), Some("plan-x"));
        assert_eq!(back[2].net.to_string(), "-0.2499");
        assert_eq!(back[3].total_excl_vat.to_string(), "12.3456");
        assert_eq!(back[3].time_cost.excl_vat.to_string(), "1.5000");
        assert_eq!(back[3].discount.excl_vat.to_string(), "1.3164");
        assert_eq!(back[3].net.to_string(), "12.0956");
        assert_eq!(back[4].vat.to_string(), "1.2000");
        assert_eq!(back[4].fixed_cost.incl_vat.to_string(), "-1.1900");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn revenue_and_health_round_trip() {
        let dir = scratch("revenue-health-rt");
        let mut rev = vec![
            revenue("2026-01-05T08:00:00Z", "site-b", 0, "100.5"),
            revenue("2026-01-05T08:00:00Z", "site-a", 1, "12.3456"),
            revenue("2026-01-05T08:00:00Z", "site-a", 0, "-0.0001"),
            RevenueRow {
                tariff_id: Arc::from("peak"),
                payment_fees: dec("0"),
                net: dec("7.5"),
                ..revenue("2026-01-05T08:00:00Z", "site-a", 2, "7.5")
            },
            RevenueRow {
                charge_point_id: Arc::from("CP-0"),
                payment_fees: dec("-0.0001"),
                net: dec("99999999999999.9999"),
                ..revenue("2026-01-05T08:00:00Z", "site-a", 3, "1")
            },
        ];
        let mut w = revenue_writer(&dir);
        for r in &rev {
            w.push(r.clone());
        }
        w.flush().expect("flush revenue");
        rev.sort_by(RevenueRow::sort_cmp);
        let back = read_revenue(&dir).expect("read revenue");
        assert_eq!(back, rev);
        // Key: window_start, site_id, charge_point_id, payment_method, tariff_id, currency,
        // revision.
        let keys: Vec<(&str, &str, &str, i32)> = back
            .iter()
            .map(|r| (&*r.site_id, &*r.charge_point_id, &*r.tariff_id, r.revision))
            .collect();
        assert_eq!(
            keys,
            [
                ("site-a", "CP-0", "standard", 3),
                ("site-a", "CP-1", "peak", 2),
                ("site-a", "CP-1", "standard", 0),
                ("site-a", "CP-1", "standard", 1),
                ("site-b", "CP-1", "standard", 0),
            ]
        );
        assert_eq!(back[0].payment_fees.to_string(), "-0.0001");
        assert_eq!(back[0].net.to_string(), "99999999999999.9999");
        assert_eq!(back[2].payment_fees.to_string(), "0.7500");
        assert_eq!(back[2].net.to_string(), "-0.7501");

        let site = HealthRow {
            window_start: ts("2026-01-05T08:00:00Z"),
            window_end: ts("2026-01-05T08:15:00Z"),
            level: HealthLevel::Site,
            site_id: Arc::from("site-a"),
            charge_point_id: Arc::from(""),
            connector_id: None,
            score: 87.5,
            availability: 1.0,
            heartbeat_regularity: 0.75,
            session_success: 0.9,
            error_free: 1.0,
            anomaly_free: 0.5,
            open_anomalies: 2,
            main_cause: Some(HealthComponent::AnomalyFree),
        };
        let connector = HealthRow {
            level: HealthLevel::Connector,
            charge_point_id: Arc::from("CP-1"),
            connector_id: Some(1),
            score: 100.0,
            main_cause: None,
            ..site.clone()
        };
        let charger = HealthRow {
            level: HealthLevel::Charger,
            charge_point_id: Arc::from("CP-1"),
            main_cause: Some(HealthComponent::HeartbeatRegularity),
            ..site.clone()
        };
        let mut h = health_writer(&dir);
        h.push(site.clone());
        h.push(charger.clone());
        h.push(connector.clone());
        h.flush().expect("flush health");
        assert_eq!(
            read_health(&dir).expect("read health"),
            vec![connector, charger, site]
        );
        let schema = HealthRow::schema();
        let main_cause = schema.field_with_name("main_cause").expect("main_cause");
        assert!(main_cause.is_nullable());
        assert_eq!(main_cause.data_type(), &DataType::Utf8);
        // Written as the component's name.
        let written = File::open(dir.join("health/date=2026-01-05/part-000000.parquet"))
            .expect("health file");
        let reader = ParquetRecordBatchReaderBuilder::try_new(written)
            .expect("reader")
            .build()
            .expect("build");
        let batch = reader.into_iter().next().expect("batch").expect("ok");
        let names = batch
            .column_by_name("main_cause")
            .expect("column")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8")
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(
            names,
            [None, Some("heartbeat_regularity"), Some("anomaly_free")]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn partitions_by_utc_date_with_atomic_deterministic_names() {
        let dir = scratch("partitions");
        let mut w = sessions_writer(&dir);
        w.push(session(
            "CP-1",
            "2026-01-05T23:59:59.999Z",
            "1",
            "1",
            "0",
            "1",
        ));
        w.push(session("CP-1", "2026-01-06T00:00:00Z", "2", "2", "0", "2"));
        // A session ending just after local midnight east of UTC is still the 5th in UTC.
        w.push(session(
            "CP-2",
            "2026-01-06T00:30:00+02:00",
            "3",
            "3",
            "0",
            "3",
        ));
        let stats = w.flush().expect("flush");
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.files.len(), 2);
        assert!(stats.bytes > 0);

        // Empty flushes write nothing and do not use up a sequence number.
        assert_eq!(w.flush().expect("empty flush"), FlushStats::default());
        w.push(session("CP-1", "2026-01-06T08:00:00Z", "4", "4", "0", "4"));
        w.flush().expect("second flush");

        assert_eq!(
            tree(&dir),
            vec![
                "sessions/date=2026-01-05/part-000000.parquet",
                "sessions/date=2026-01-06/part-000000.parquet",
                "sessions/date=2026-01-06/part-000001.parquet",
            ]
        );
        let back = read_sessions(&dir).expect("read");
        let txs: Vec<&str> = back.iter().map(|s| s.transaction_id.as_str()).collect();
        assert_eq!(txs, ["3", "1", "2", "4"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn identical_files_whatever_the_push_order() {
        let (a, b) = (scratch("det-a"), scratch("det-b"));
        let rows = [
            session("CP-1", "2026-01-05T10:00:00Z", "1", "1.5", "0.3", "1.8"),
            session("CP-2", "2026-01-05T10:00:00Z", "2", "2.5", "0.5", "3"),
            session("CP-1", "2026-01-06T10:00:00Z", "3", "3.5", "0.7", "4.2"),
        ];
        let mut wa = sessions_writer(&a);
        let mut wb = sessions_writer(&b);
        for r in &rows {
            wa.push(r.clone());
        }
        for r in rows.iter().rev() {
            wb.push(r.clone());
        }
        wa.flush().expect("flush a");
        wb.flush().expect("flush b");
        assert_eq!(tree(&a), tree(&b));
        for name in tree(&a) {
            let fa = fs::read(a.join(&name)).expect("read a");
            let fb = fs::read(b.join(&name)).expect("read b");
            assert!(fa == fb, "{name} differs");
        }
        let _ = fs::remove_dir_all(&a);
        let _ = fs::remove_dir_all(&b);
    }

    #[test]
    fn refuses_to_overwrite_and_resumes_numbering() {
        let dir = scratch("resume");
        let mut w = sessions_writer(&dir);
        w.push(session("CP-1", "2026-01-05T10:00:00Z", "1", "1", "0", "1"));
        w.flush().expect("first run");

        let mut again = sessions_writer(&dir);
        again.push(session("CP-1", "2026-01-05T11:00:00Z", "2", "1", "0", "1"));
        assert!(matches!(again.flush(), Err(ParquetError::Exists(_))));
        assert_eq!(again.len(), 1, "rows stay buffered after a failed flush");

        let mut resumed = sessions_writer(&dir).resume().expect("resume");
        assert_eq!(resumed.next_seq(), 1);
        resumed.push(session("CP-1", "2026-01-05T11:00:00Z", "2", "1", "0", "1"));
        resumed.flush().expect("resumed flush");
        assert_eq!(read_sessions(&dir).expect("read").len(), 2);
        assert!(tree(&dir).iter().all(|n| !n.contains(".tmp")));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn charging_periods_round_trip_in_their_sessions_partition() {
        let dir = scratch("periods-rt");
        // Ends just after midnight UTC: its first period starts the day before, yet all its
        // periods go with the session into date=2026-01-06.
        let a = session("CP-1", "2026-01-06T00:10:00Z", "1", "1", "0", "1");
        let mut b = session("CP-2", "2026-01-05T12:00:00Z", "tx-2", "2", "0", "2");
        b.connector_id = 3;
        b.periods.push(PeriodRecord {
            start_time: ts("2026-01-05T11:59:00Z"),
            energy_wh: 0,
            charging_ms: 0,
            parking_ms: 60_000,
            max_power_w: Some(0.0),
        });
        let mut c = session("CP-3", "2026-01-05T13:00:00Z", "3", "3", "0", "3");
        c.periods.clear();
        assert_eq!(period_rows(&c).count(), 0);

        let a_rows: Vec<ChargingPeriodRow> = period_rows(&a).collect();
        assert_eq!(
            a_rows,
            [
                ChargingPeriodRow {
                    charge_point_id: Arc::from("CP-1"),
                    connector_id: 1,
                    transaction_id: "1".to_string(),
                    session_end_time: ts("2026-01-06T00:10:00Z"),
                    period: 0,
                    start_time: ts("2026-01-05T23:10:00Z"),
                    energy_wh: 10_000,
                    charging_ms: 2_400_000,
                    parking_ms: 0,
                    max_power_w: Some(22_080.5),
                },
                ChargingPeriodRow {
                    charge_point_id: Arc::from("CP-1"),
                    connector_id: 1,
                    transaction_id: "1".to_string(),
                    session_end_time: ts("2026-01-06T00:10:00Z"),
                    period: 1,
                    start_time: ts("2026-01-05T23:50:00Z"),
                    energy_wh: 2_345,
                    charging_ms: 600_000,
                    parking_ms: 600_000,
                    max_power_w: None,
                },
            ]
        );

        let mut rows: Vec<ChargingPeriodRow> =
            [&a, &b, &c].into_iter().flat_map(period_rows).collect();
        assert_eq!(rows.len(), 5);
        let mut sessions = sessions_writer(&dir);
        let mut periods = charging_periods_writer(&dir);
        for s in [&c, &b, &a] {
            sessions.push(s.clone());
        }
        for r in rows.iter().rev() {
            periods.push(r.clone());
        }
        sessions.flush().expect("flush sessions");
        let stats = periods.flush().expect("flush periods");
        assert_eq!(stats.rows, 5);
        assert_eq!(
            tree(&dir),
            vec![
                "charging_periods/date=2026-01-05/part-000000.parquet",
                "charging_periods/date=2026-01-06/part-000000.parquet",
                "sessions/date=2026-01-05/part-000000.parquet",
                "sessions/date=2026-01-06/part-000000.parquet",
            ]
        );

        rows.sort_by(ChargingPeriodRow::sort_cmp);
        let back = read_charging_periods(&dir).expect("read periods");
        assert_eq!(back, rows);
        let keys: Vec<(&str, u32)> = back
            .iter()
            .map(|r| (r.transaction_id.as_str(), r.period))
            .collect();
        assert_eq!(
            keys,
            [("tx-2", 0), ("tx-2", 1), ("tx-2", 2), ("1", 0), ("1", 1)]
        );
        assert_eq!(back[1].max_power_w, None);
        assert_eq!(back[2].max_power_w, Some(0.0));
        assert_eq!(back[2].connector_id, 3);
        let schema = ChargingPeriodRow::schema();
        assert!(schema
            .field_with_name("max_power_w")
            .expect("max_power_w")
            .is_nullable());
        assert_eq!(
            schema.fields().iter().filter(|f| f.is_nullable()).count(),
            1
        );

        // Buffered rows are saved in commit snapshots with bincode.
        let bytes = bincode::serialize(&periods.state()).expect("serialize");
        let (seq, restored): (u64, Vec<ChargingPeriodRow>) =
            bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!((seq, restored.as_slice()), (1, &[][..]));
        let bytes = bincode::serialize(&rows).expect("serialize rows");
        let restored: Vec<ChargingPeriodRow> =
            bincode::deserialize(&bytes).expect("deserialize rows");
        assert_eq!(restored, rows);
        let _ = fs::remove_dir_all(&dir);
    }

    fn uptime_row(
        cp: &str,
        connector_id: u32,
        period: UptimePeriod,
        start: &str,
        end: &str,
        outage_minutes: f64,
    ) -> UptimeRow {
        let minutes = (ts(end) - ts(start)) as f64 / 60_000.0;
        UptimeRow {
            charge_point_id: Arc::from(cp),
            site_id: Arc::from("site-ny"),
            connector_id,
            period,
            period_start: ts(start),
            period_end: ts(end),
            minutes,
            outage_minutes,
            excluded_minutes: 0.5,
            uptime_pct: ((100.0 * (minutes - outage_minutes + 0.5) / minutes) * 1000.0).round()
                / 1000.0,
        }
    }

    #[test]
    fn uptime_round_trip_partitioned_by_period_start() {
        let dir = scratch("uptime-rt");
        let mut rows = vec![
            uptime_row(
                "CP-2",
                1,
                UptimePeriod::Day,
                "2026-02-28T05:00:00Z",
                "2026-03-01T05:00:00Z",
                180.0,
            ),
            uptime_row(
                "CP-1",
                2,
                UptimePeriod::Month,
                "2026-02-01T05:00:00Z",
                "2026-03-01T05:00:00Z",
                495.0,
            ),
            uptime_row(
                "CP-1",
                2,
                UptimePeriod::Day,
                "2026-02-01T05:00:00Z",
                "2026-02-02T05:00:00Z",
                0.0,
            ),
            uptime_row(
                "CP-1",
                1,
                UptimePeriod::Day,
                "2026-02-28T05:00:00Z",
                "2026-03-01T05:00:00Z",
                12.345,
            ),
            // A DST day (23 h), and a site east of UTC: its local day starts the day before
            // in UTC, and so does its partition.
            uptime_row(
                "CP-3",
                1,
                UptimePeriod::Day,
                "2026-03-08T05:00:00Z",
                "2026-03-09T04:00:00Z",
                60.0,
            ),
            UptimeRow {
                site_id: Arc::from("site-tokyo"),
                ..uptime_row(
                    "CP-4",
                    1,
                    UptimePeriod::Day,
                    "2026-02-27T15:00:00Z",
                    "2026-02-28T15:00:00Z",
                    1440.0,
                )
            },
        ];
        assert_eq!(rows[4].minutes, 1380.0);
        let mut w = uptime_writer(&dir);
        for r in &rows {
            w.push(r.clone());
        }
        // Buffered rows go into commit snapshots with bincode.
        let bytes = bincode::serialize(&w.state()).expect("serialize");
        let (seq, restored): (u64, Vec<UptimeRow>) =
            bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!((seq, &restored), (0, &rows));
        let stats = w.flush().expect("flush uptime");
        assert_eq!(stats.rows, 6);
        assert_eq!(
            tree(&dir),
            vec![
                "uptime/date=2026-02-01/part-000000.parquet",
                "uptime/date=2026-02-27/part-000000.parquet",
                "uptime/date=2026-02-28/part-000000.parquet",
                "uptime/date=2026-03-08/part-000000.parquet",
            ]
        );
        rows.sort_by(UptimeRow::sort_cmp);
        let back = read_uptime(&dir).expect("read uptime");
        assert_eq!(back, rows);
        // Within a file: period_start, day before month, charge point, connector.
        let keys: Vec<(&str, u32, &str)> = back
            .iter()
            .map(|r| (&*r.charge_point_id, r.connector_id, r.period.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("CP-1", 2, "day"),
                ("CP-1", 2, "month"),
                ("CP-4", 1, "day"),
                ("CP-1", 1, "day"),
                ("CP-2", 1, "day"),
                ("CP-3", 1, "day"),
            ]
        );
        assert_eq!(back[3].outage_minutes, 12.345);
        let schema = UptimeRow::schema();
        assert!(schema.fields().iter().all(|f| !f.is_nullable()));
        assert_eq!(
            schema
                .field_with_name("connector_id")
                .expect("connector_id")
                .data_type(),
            &DataType::Int32
        );
        assert_eq!(
            schema
                .field_with_name("period_start")
                .expect("period_start")
                .data_type(),
            &timestamp_type()
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn outages_round_trip_partitioned_by_start() {
        use crate::model::stable_id;
        let dir = scratch("outages-rt");
        let outage = |cp: &str, connector: u32, start: &str, end: &str, cause: &str| OutageRecord {
            id: stable_id(&["outage", cp, &connector.to_string(), &ts(start).to_string()]),
            charge_point_id: Arc::from(cp),
            site_id: Arc::from("site-ny"),
            connector_id: connector,
            start: ts(start),
            end: ts(end),
            cause: Arc::from(cause),
            outage_minutes: (ts(end) - ts(start)) as f64 / 60_000.0,
            excluded_minutes: 0.0,
            exclusion: Arc::from(""),
        };
        let mut rows = vec![
            // Across midnight UTC: partitioned by its start.
            OutageRecord {
                excluded_minutes: 30.0,
                exclusion: Arc::from("vehicle"),
                ..outage(
                    "CP-1",
                    1,
                    "2026-02-28T04:00:00Z",
                    "2026-02-28T06:00:00Z",
                    "faulted",
                )
            },
            outage(
                "CP-1",
                1,
                "2026-02-27T23:30:00Z",
                "2026-02-28T00:10:00Z",
                "communication_lost",
            ),
            OutageRecord {
                excluded_minutes: 120.0,
                exclusion: Arc::from("vandalism,scheduled_maintenance"),
                ..outage(
                    "CP-2",
                    3,
                    "2026-02-27T18:00:00Z",
                    "2026-02-27T20:00:00Z",
                    "unavailable",
                )
            },
            outage(
                "CP-1",
                2,
                "2026-02-27T18:00:00Z",
                "2026-02-27T18:00:00.001Z",
                "charger_down",
            ),
        ];
        let mut w = outages_writer(&dir);
        for r in rows.iter().rev() {
            w.push(r.clone());
        }
        w.flush().expect("flush outages");
        assert_eq!(
            tree(&dir),
            vec![
                "outages/date=2026-02-27/part-000000.parquet",
                "outages/date=2026-02-28/part-000000.parquet",
            ]
        );
        rows.sort_by(OutageRecord::sort_cmp);
        let back = read_outages(&dir).expect("read outages");
        assert_eq!(back, rows);
        let keys: Vec<(&str, u32, &str)> = back
            .iter()
            .map(|r| (&*r.charge_point_id, r.connector_id, &*r.cause))
            .collect();
        assert_eq!(
            keys,
            [
                ("CP-1", 2, "charger_down"),
                ("CP-2", 3, "unavailable"),
                ("CP-1", 1, "communication_lost"),
                ("CP-1", 1, "faulted"),
            ]
        );
        assert_eq!(back[0].outage_minutes, 1.0 / 60_000.0);
        assert_eq!(&*back[1].exclusion, "vandalism,scheduled_maintenance");
        assert_eq!(&*back[2].exclusion, "");
        assert!(OutageRecord::schema()
            .fields()
            .iter()
            .all(|f| !f.is_nullable()));
        let bytes = bincode::serialize(&rows).expect("serialize");
        let restored: Vec<OutageRecord> = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(restored, rows);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn money_that_does_not_fit_is_an_error_and_writes_nothing() {
        let dir = scratch("overflow");
        let mut w = sessions_writer(&dir);
        w.push(session(
            "CP-1",
            "2026-01-05T10:00:00Z",
            "1",
            "100000000000000",
            "0",
            "1",
        ));
        match w.flush() {
            Err(ParquetError::DecimalOverflow { column, .. }) => {
                assert_eq!(column, "total_excl_vat")
            }
            other => panic!("expected overflow, got {other:?}"),
        }
        assert_eq!(w.len(), 1);
        assert!(tree(&dir).is_empty(), "no file, no temporary left behind");

        let mut w = revenue_writer(&dir);
        w.push(revenue("2026-01-05T08:00:00Z", "site-a", 0, "0.00001"));
        assert!(matches!(
            w.flush(),
            Err(ParquetError::DecimalInexact {
                column: "total_excl_vat",
                ..
            })
        ));
        assert!(read_revenue(&dir).expect("read").is_empty());

        assert_eq!(
            money_to_unscaled("x", dec("-99999999999999.9999")).ok(),
            Some(-(MONEY_LIMIT - 1))
        );
        assert_eq!(money_to_unscaled("x", dec("1.230000")).ok(), Some(12_300));
        assert!(money_to_unscaled("x", dec("-100000000000000")).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
