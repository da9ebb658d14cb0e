//! Parquet sink: hive-partitioned, atomically written tables of sessions, revenue and health.
//!
//! Owns: the Parquet tables under an output directory and their schemas
//! (`schemas/parquet.md` documents them). This is the only code in evflow that writes Parquet;
//! it also reads the tables back for tests and tools.
//!
//! Layout: `OUT/TABLE/date=YYYY-MM-DD/part-NNNNNN.parquet`, where the UTC date comes from
//! `end_time` (sessions) or `window_start` (revenue, health) and `NNNNNN` is the writer's
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

use crate::model::{
    EnergySource, HealthLevel, HealthRow, Millis, Money, RevenueRow, SessionRecord,
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
}

/// A record type with a Parquet table: implemented for [`SessionRecord`], [`RevenueRow`] and
/// [`HealthRow`] only.
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

/// Writer of `OUT/sessions/`.
pub fn sessions_writer(out_dir: &Path) -> SessionsWriter {
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

/// All revenue rows under `out_dir/revenue/`. Money comes back at scale 4.
pub fn read_revenue(out_dir: &Path) -> Result<Vec<RevenueRow>, ParquetError> {
    read_table(out_dir)
}

/// All health rows under `out_dir/health/`.
pub fn read_health(out_dir: &Path) -> Result<Vec<HealthRow>, ParquetError> {
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

fn i64_col(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

fn f64_col(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

fn connector_to_i32(column: &'static str, v: u32) -> Result<i32, ParquetError> {
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

    fn connector(&self, name: &str, v: i32) -> Result<u32, ParquetError> {
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
        ]))
    }

    fn partition_time(&self) -> Millis {
        self.end_time
    }

    fn sort_cmp(&self, o: &Self) -> Ordering {
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
                )
                    .cmp(&(o.total_excl_vat, o.vat, o.total_incl_vat, o.late))
            })
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| connector_to_i32("connector_id", r.connector_id))
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

        (0..batch.num_rows())
            .map(|i| {
                let energy_source = match energy_source.value(i) {
                    "registers" => EnergySource::Registers,
                    "samples" => EnergySource::Samples,
                    other => return Err(c.error(format!("unknown energy_source {other:?}"))),
                };
                Ok(SessionRecord {
                    charge_point_id: charge_point_id[i].clone(),
                    connector_id: c.connector("connector_id", connector_id.value(i))?,
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
            field("payment_method", DataType::Utf8),
            field("currency", DataType::Utf8),
            field("sessions", DataType::Int64),
            field("energy_wh", DataType::Int64),
            field("total_excl_vat", money_type()),
            field("vat", money_type()),
            field("total_incl_vat", money_type()),
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
            &self.payment_method,
            &self.currency,
            self.revision,
        )
            .cmp(&(
                o.window_start,
                &o.site_id,
                &o.payment_method,
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
                )
                    .cmp(&(
                        o.window_end,
                        o.sessions,
                        o.energy_wh,
                        o.total_excl_vat,
                        o.vat,
                        o.total_incl_vat,
                    ))
            })
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let columns: Vec<ArrayRef> = vec![
            ts_col(rows.iter().map(|r| r.window_start)),
            ts_col(rows.iter().map(|r| r.window_end)),
            str_col(rows.iter().map(|r| &*r.site_id)),
            str_col(rows.iter().map(|r| &*r.payment_method)),
            str_col(rows.iter().map(|r| &*r.currency)),
            i64_col(rows.iter().map(|r| r.sessions)),
            i64_col(rows.iter().map(|r| r.energy_wh)),
            money_col("total_excl_vat", rows.iter().map(|r| r.total_excl_vat))?,
            money_col("vat", rows.iter().map(|r| r.vat))?,
            money_col("total_incl_vat", rows.iter().map(|r| r.total_incl_vat))?,
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
        let payment_method = c.strs("payment_method")?;
        let currency = c.strs("currency")?;
        let sessions = c.get::<Int64Array>("sessions")?;
        let energy_wh = c.get::<Int64Array>("energy_wh")?;
        let total_excl_vat = c.money("total_excl_vat")?;
        let vat = c.money("vat")?;
        let total_incl_vat = c.money("total_incl_vat")?;
        let revision = c.get::<Int32Array>("revision")?;

        Ok((0..batch.num_rows())
            .map(|i| RevenueRow {
                window_start: window_start.value(i),
                window_end: window_end.value(i),
                site_id: site_id[i].clone(),
                payment_method: payment_method[i].clone(),
                currency: currency[i].clone(),
                sessions: sessions.value(i),
                energy_wh: energy_wh.value(i),
                total_excl_vat: total_excl_vat[i],
                vat: vat[i],
                total_incl_vat: total_incl_vat[i],
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
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ParquetError> {
        let connector_ids = rows
            .iter()
            .map(|r| {
                r.connector_id
                    .map(|c| connector_to_i32("connector_id", c))
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
                    Some(c.connector("connector_id", connector_id.value(i))?)
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
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn session(cp: &str, end: &str, tx: &str, excl: &str, vat: &str, incl: &str) -> SessionRecord {
        SessionRecord {
            charge_point_id: Arc::from(cp),
            connector_id: 1,
            site_id: Arc::from("site-1"),
            transaction_id: tx.to_string(),
            id_tag: Arc::from("TAG"),
            start_time: ts(end) - 3_600_000,
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
        }
    }

    fn revenue(start: &str, site: &str, revision: i32, excl: &str) -> RevenueRow {
        RevenueRow {
            window_start: ts(start),
            window_end: ts(start) + 3_600_000,
            site_id: Arc::from(site),
            payment_method: Arc::from("app"),
            currency: Arc::from("EUR"),
            sessions: 3,
            energy_wh: 45_000,
            total_excl_vat: dec(excl),
            vat: dec("0.0001"),
            total_incl_vat: dec(excl) + dec("0.0001"),
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
        rows[2].connector_id = 2;

        let mut w = sessions_writer(&dir);
        for r in rows.iter().rev() {
            w.push(r.clone());
        }
        let stats = w.flush().expect("flush");
        assert_eq!(stats.rows, 4);
        assert_eq!(stats.files.len(), 1);
        assert!(w.is_empty());

        let back = read_sessions(&dir).expect("read");
        rows.sort_by(SessionRecord::sort_cmp);
        assert_eq!(back, rows);
        // Exact, not merely equal as numbers after some rounding.
        assert_eq!(back[0].total_excl_vat.to_string(), "99999999999999.9999");
        assert_eq!(back[1].total_excl_vat.to_string(), "0.0001");
        assert_eq!(back[2].total_excl_vat.to_string(), "12.3456");
        assert_eq!(back[3].vat.to_string(), "1.2000");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn revenue_and_health_round_trip() {
        let dir = scratch("revenue-health-rt");
        let mut rev = vec![
            revenue("2026-01-05T08:00:00Z", "site-b", 0, "100.5"),
            revenue("2026-01-05T08:00:00Z", "site-a", 1, "12.3456"),
            revenue("2026-01-05T08:00:00Z", "site-a", 0, "-0.0001"),
        ];
        let mut w = revenue_writer(&dir);
        for r in &rev {
            w.push(r.clone());
        }
        w.flush().expect("flush revenue");
        rev.sort_by(RevenueRow::sort_cmp);
        assert_eq!(read_revenue(&dir).expect("read revenue"), rev);
        assert_eq!(rev[0].revision, 0);

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
        };
        let connector = HealthRow {
            level: HealthLevel::Connector,
            charge_point_id: Arc::from("CP-1"),
            connector_id: Some(1),
            score: 100.0,
            ..site.clone()
        };
        let mut h = health_writer(&dir);
        h.push(site.clone());
        h.push(connector.clone());
        h.flush().expect("flush health");
        assert_eq!(
            read_health(&dir).expect("read health"),
            vec![connector, site]
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
