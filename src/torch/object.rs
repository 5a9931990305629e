//! What the pickle machine builds: values, the arena's objects, and the short list of globals
//! a checkpoint may name. Everything here is inert data; "calling" a global only ever builds
//! one of these.

use std::collections::hash_map::{Entry, HashMap};
use std::rc::Rc;

/// The element type of a torch storage, named by its storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
}

impl Dtype {
    const ALL: [(Dtype, &'static str, &'static str, usize); 12] = [
        (Dtype::F64, "DoubleStorage", "float64", 8),
        (Dtype::F32, "FloatStorage", "float32", 4),
        (Dtype::F16, "HalfStorage", "float16", 2),
        (Dtype::BF16, "BFloat16Storage", "bfloat16", 2),
        (Dtype::I64, "LongStorage", "int64", 8),
        (Dtype::I32, "IntStorage", "int32", 4),
        (Dtype::I16, "ShortStorage", "int16", 2),
        (Dtype::I8, "CharStorage", "int8", 1),
        (Dtype::U8, "ByteStorage", "uint8", 1),
        (Dtype::Bool, "BoolStorage", "bool", 1),
        (Dtype::C64, "ComplexFloatStorage", "complex64", 8),
        (Dtype::C128, "ComplexDoubleStorage", "complex128", 16),
    ];

    fn row(self) -> (Dtype, &'static str, &'static str, usize) {
        Self::ALL.into_iter().find(|r| r.0 == self).unwrap()
    }

    fn from_storage(class: &str) -> Option<Dtype> {
        Self::ALL.into_iter().find(|r| r.1 == class).map(|r| r.0)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        self.row().3
    }

    /// torch's name, for messages.
    pub fn name(self) -> &'static str {
        self.row().2
    }
}

/// The globals a checkpoint may name; anything else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    Size,
    Storage(Dtype),
}

/// The allow-list: the global a GLOBAL or STACK_GLOBAL names, if a checkpoint may name it.
pub fn resolve(module: &str, name: &str) -> Result<Global, String> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Global::RebuildParameter
        }
        ("torch", "Size") => Global::Size,
        ("torch", class) => match Dtype::from_storage(class) {
            Some(d) => Global::Storage(d),
            None => return Err(refused(module, name)),
        },
        _ => return Err(refused(module, name)),
    };
    Ok(g)
}

fn refused(module: &str, name: &str) -> String {
    format!(
        "refused global {module}.{name}: only tensors, storages and dicts are read, \
         and nothing in the file is run"
    )
}

#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Global(Global),
    /// An object in the arena.
    Obj(usize),
}

/// Where a tensor's elements lie: a storage in the file and a strided view of it.
#[derive(Clone, Debug)]
pub struct Storage {
    pub dtype: Dtype,
    pub key: String,
    /// Elements, as the persistent id declares them.
    pub numel: u64,
}

#[derive(Clone, Debug)]
pub struct TensorRef {
    pub storage: Storage,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Debug)]
pub enum Obj {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Entries in insertion order, as Python's dicts keep them.
    Dict(Vec<(Value, Value)>),
    Storage(Storage),
    Tensor(TensorRef),
}

/// One unpickled object graph.
pub struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Value,
    /// Bytes read, up to and including STOP: where the next pickle of a stream begins.
    pub end: usize,
}

impl Pickle {
    pub fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(*i),
            _ => None,
        }
    }

    /// What a value is, for messages: "a list of 3 items", "a dict with keys 'state', …".
    pub fn describe(&self, v: &Value) -> String {
        let short = |s: &str| s.chars().take(40).collect::<String>();
        match (v, self.obj(v)) {
            (Value::None, _) => "None".into(),
            (Value::Bool(_), _) => "a bool".into(),
            (Value::Int(i), _) => format!("the integer {i}"),
            (Value::BigInt(_), _) => "a big integer".into(),
            (Value::Float(x), _) => format!("the float {x}"),
            (Value::Str(s), _) => format!("the string {:?}", short(s)),
            (Value::Bytes(b), _) => format!("{} bytes", b.len()),
            (Value::Global(g), _) => format!("the global {g:?}"),
            (_, Some(Obj::List(l))) => format!("a list of {} items", l.len()),
            (_, Some(Obj::Tuple(t))) => format!("a tuple of {} items", t.len()),
            (_, Some(Obj::Dict(d))) => {
                let keys: Vec<String> = d
                    .iter()
                    .take(4)
                    .map(|(k, _)| match k {
                        Value::Str(s) => format!("{:?}", short(s)),
                        Value::Int(i) => i.to_string(),
                        _ => "…".into(),
                    })
                    .collect();
                let more = if d.len() > 4 { ", …" } else { "" };
                format!("a dict with keys {}{more}", keys.join(", "))
            }
            (_, Some(Obj::Storage(_))) => "a storage".into(),
            (_, Some(Obj::Tensor(_))) => "a tensor".into(),
            (_, None) => "nothing".into(),
        }
    }
}

/// A dict key, equal to another exactly when Python finds the two equal.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

impl Key {
    fn of(v: &Value) -> Option<Key> {
        Some(match v {
            Value::None => Key::None,
            // True == 1 == 1.0 in Python, as dict keys too.
            Value::Bool(b) => Key::Int((*b).into()),
            Value::Int(i) => Key::Int(*i),
            Value::Float(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Key::Int(*x as i64),
            Value::Float(x) if !x.is_nan() => Key::Float(x.to_bits()),
            Value::Str(s) => Key::Str(s.clone()),
            Value::Bytes(b) => Key::Bytes(b.clone()),
            // NaN equals nothing; big integers and tuples as keys are not torch's. They stay
            // as written.
            _ => return None,
        })
    }
}

/// As Python's dict: a key set again keeps its first place and takes the last value.
pub fn keep_last(d: &mut Vec<(Value, Value)>) {
    if d.len() < 2 {
        return;
    }
    let mut at: HashMap<Key, usize> = HashMap::new();
    let mut out: Vec<(Value, Value)> = Vec::with_capacity(d.len());
    for (k, v) in d.drain(..) {
        match Key::of(&k).map(|key| at.entry(key)) {
            Some(Entry::Occupied(i)) => out[*i.get()].1 = v,
            Some(Entry::Vacant(i)) => {
                i.insert(out.len());
                out.push((k, v));
            }
            None => out.push((k, v)),
        }
    }
    *d = out;
}
