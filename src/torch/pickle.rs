//! An allow-list pickle machine: just enough of Python's unpickler to read what `torch.save`
//! writes, and nothing that runs code.
//!
//! Python's unpickler imports whatever global a file names and calls it; this one knows a
//! handful (OrderedDict, torch's tensor rebuilders, torch's storage types) and refuses every
//! other by name. Objects live in one arena and refer to each other by index, so a value
//! fetched from the memo is shared as in Python (a dict filled after it was memoised is seen
//! filled), and neither a cycle nor a deeply nested value can make the reader recurse. Every
//! length is checked against the bytes left before anything is allocated, and the stack, the
//! marks, the memo and the arena are capped. A memo reference is two bytes but may stand for a
//! long key or a tuple, so what the objects hold is charged against a budget that grows with
//! the bytes read: a short file cannot ask for gigabytes by copying one value again and again.

use super::object::{keep_last, resolve, Global, Obj, Pickle, Storage, TensorRef, Value};
use std::collections::HashMap;
use std::mem::size_of;
use std::rc::Rc;

/// Python's pickler recurses once per nesting level and stops near 1000, so no file it wrote
/// nests its marks deeper.
const MAX_MARKS: usize = 1000;
/// Python batches SETITEMS and APPENDS by 1000; real stacks stay in the thousands.
const MAX_STACK: usize = 1 << 20;
/// A state dict of 10,000 tensors memoises about 150,000 values and builds fewer objects.
const MAX_MEMO: usize = 1 << 22;
const MAX_OBJECTS: usize = 1 << 22;
/// Module, class and storage names are short; a longer one is not from torch.
const MAX_NAME: usize = 256;
/// Call arguments, persistent ids and tensor sizes are short tuples. A longer one is not from
/// torch, and copying it out (which a memo reference lets a file ask for again and again)
/// must stay cheap.
const MAX_TUPLE: usize = 64;
/// Bytes of objects a pickle may build per byte read, beyond `BUDGET_FLOOR`. What torch writes
/// builds 13 to 17 (measured on the fixtures: each of a state dict's tensors is a handful of
/// small tuples and memo entries); a file whose memo references copy a long key or tuple again
/// and again asks for hundreds.
const BUDGET_PER_BYTE: usize = 32;
const BUDGET_FLOOR: usize = 64 << 20;
/// A quarter of the address space: 1 GiB in the browser, where a pickle that needs more could
/// not be read beside its file anyway.
const BUDGET_MAX: usize = usize::MAX / 4;

/// Read one pickle from the start of `bytes`.
pub fn load(bytes: &[u8]) -> Result<Pickle, String> {
    let mut m = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objs: Vec::new(),
        held: 0,
    };
    loop {
        let at = m.pos;
        let Some(&op) = bytes.get(at) else {
            return Err(format!("the pickle ends at byte {at} before its STOP"));
        };
        m.pos += 1;
        match m.op(op) {
            Ok(Some(root)) => {
                let mut objs = m.objs;
                for o in &mut objs {
                    if let Obj::Dict(d) = o {
                        keep_last(d);
                    }
                }
                return Ok(Pickle {
                    objs,
                    root,
                    end: m.pos,
                });
            }
            Ok(None) => {}
            Err(e) => return Err(format!("{e} (pickle byte {at})")),
        }
    }
}

/// How many bytes of objects the first `len` bytes of a pickle may build.
fn budget(len: usize) -> usize {
    len.saturating_mul(BUDGET_PER_BYTE)
        .saturating_add(BUDGET_FLOOR)
        .min(BUDGET_MAX)
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objs: Vec<Obj>,
    /// Bytes the objects built so far take, about (see `charge`).
    held: usize,
}

type Step = Result<Option<Value>, String>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(format!(
                "an operand of {n} bytes runs past the end ({left} left)"
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The bytes of a string, a bytes object or a long integer, which the value will copy
    /// behind a reference count.
    fn payload(&mut self, n: usize) -> Result<&'a [u8], String> {
        let raw = self.take(n)?;
        self.charge(raw.len() + 2 * size_of::<usize>())?;
        Ok(raw)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().unwrap())
    }

    fn len_u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, String> {
        let n = u64::from_le_bytes(self.array()?);
        // Larger than the address space is larger than what is left; `take` says so.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn push(&mut self, v: Value) -> Step {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("more than {MAX_STACK} values on the stack"));
        }
        self.stack.push(v);
        Ok(None)
    }

    /// Count `n` bytes of what the objects hold against the budget, before they are kept.
    /// Only what outlives an opcode is charged: anything an opcode builds and drops is short
    /// (a tuple of at most `MAX_TUPLE` items, a key of at most `MAX_NAME` bytes), and the
    /// stack is capped on its own.
    fn charge(&mut self, n: usize) -> Result<(), String> {
        self.held = self.held.saturating_add(n);
        if self.held > budget(self.pos) {
            return Err(format!(
                "more than {} MiB of objects from {} bytes of pickle (one value copied over \
                 and over?)",
                budget(self.pos) >> 20,
                self.pos
            ));
        }
        Ok(())
    }

    fn alloc(&mut self, o: Obj) -> Result<Value, String> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(format!("more than {MAX_OBJECTS} objects"));
        }
        let held = match &o {
            Obj::List(v) | Obj::Tuple(v) => v.len() * size_of::<Value>(),
            Obj::Dict(d) => d.len() * size_of::<(Value, Value)>(),
            Obj::Storage(s) => s.key.len(),
            Obj::Tensor(t) => {
                t.storage.key.len() + size_of::<u64>() * (t.shape.len() + t.stride.len())
            }
        };
        self.charge(size_of::<Obj>() + held)?;
        self.objs.push(o);
        Ok(Value::Obj(self.objs.len() - 1))
    }

    fn new_obj(&mut self, o: Obj) -> Step {
        let v = self.alloc(o)?;
        self.push(v)
    }

    /// The stack above the innermost mark: what the current opcode may pop.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        Ok(self.stack.pop().unwrap())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self
            .marks
            .pop()
            .ok_or("an opcode needs a MARK and there is none")?;
        Ok(self.stack.split_off(m))
    }

    /// The object on top of the stack, to be filled by APPEND(S) or SETITEM(S).
    fn top_obj(&mut self) -> Result<&mut Obj, String> {
        match self.stack.last() {
            Some(Value::Obj(i)) if self.stack.len() > self.floor() => Ok(&mut self.objs[*i]),
            _ => Err("APPEND or SETITEM without a list or dict to fill".into()),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Step {
        self.charge(items.len() * size_of::<Value>())?;
        match self.top_obj()? {
            Obj::List(l) => l.extend(items),
            _ => return Err("APPEND to something that is not a list".into()),
        }
        Ok(None)
    }

    fn set_items(&mut self, items: Vec<Value>) -> Step {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with a key and no value".into());
        }
        // Charged as written: a key set again is kept until the end, where `keep_last` drops it.
        self.charge(items.len() / 2 * size_of::<(Value, Value)>())?;
        let mut it = items.into_iter();
        let Obj::Dict(d) = self.top_obj()? else {
            return Err("SETITEM on something that is not a dict".into());
        };
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(None)
    }

    fn memo_put(&mut self, key: u32) -> Step {
        let top = self
            .stack
            .last()
            .ok_or("memo PUT on an empty stack")?
            .clone();
        if !self.memo.contains_key(&key) {
            if self.memo.len() >= MAX_MEMO {
                return Err(format!("more than {MAX_MEMO} memo entries"));
            }
            // A hash map's entry, with the slack it keeps to grow.
            self.charge(2 * size_of::<(u32, Value)>())?;
        }
        self.memo.insert(key, top);
        Ok(None)
    }

    fn memo_get(&mut self, key: u32) -> Step {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo key {key} was never stored"))?
            .clone();
        self.push(v)
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .take(MAX_NAME + 1)
            .position(|&b| b == b'\n')
            .ok_or("a GLOBAL name without its newline")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name that is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }

    fn text(raw: &[u8]) -> Result<Rc<str>, String> {
        std::str::from_utf8(raw)
            .map(Rc::from)
            .map_err(|_| "a string that is not UTF-8".to_string())
    }

    fn int(raw: &[u8]) -> Value {
        if raw.len() > 8 {
            return Value::BigInt(raw.into());
        }
        let fill = if raw.last().is_some_and(|&b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut b = [fill; 8];
        b[..raw.len()].copy_from_slice(raw);
        Value::Int(i64::from_le_bytes(b))
    }

    fn tuple_of(&self, v: &Value, what: &str) -> Result<Vec<Value>, String> {
        match v {
            Value::Obj(i) => match &self.objs[*i] {
                Obj::Tuple(t) | Obj::List(t) if t.len() > MAX_TUPLE => {
                    Err(format!("{what} has {} items", t.len()))
                }
                Obj::Tuple(t) | Obj::List(t) => Ok(t.clone()),
                _ => Err(format!("{what} is not a tuple")),
            },
            _ => Err(format!("{what} is not a tuple")),
        }
    }

    fn count(v: &Value, what: &str) -> Result<u64, String> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            _ => Err(format!("{what} is not a non-negative integer")),
        }
    }

    fn counts(&self, v: &Value, what: &str) -> Result<Vec<u64>, String> {
        let t = self.tuple_of(v, what)?;
        t.iter().map(|x| Self::count(x, what)).collect()
    }

    /// A persistent id: ('storage', StorageClass, key, location, numel[, view_metadata]).
    fn persistent(&mut self, pid: Value) -> Step {
        let t = self.tuple_of(&pid, "a persistent id")?;
        let (dtype, key, numel) = match &t[..] {
            [Value::Str(tag), Value::Global(Global::Storage(d)), key, Value::Str(_), n, view @ ..]
                if &**tag == "storage" && view.len() <= 1 =>
            {
                if view.iter().any(|v| !matches!(v, Value::None)) {
                    return Err("a storage view (pre-1.0 torch); re-save the file".into());
                }
                let key = match key {
                    Value::Str(s) if s.len() <= MAX_NAME => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    // Torch's keys are short numbers; a long one would cost at every use.
                    Value::Str(s) => return Err(format!("a storage key of {} bytes", s.len())),
                    _ => return Err("a storage key that is neither a string nor an int".into()),
                };
                (*d, key, Self::count(n, "a storage size")?)
            }
            _ => return Err("a persistent id that is not a torch storage".into()),
        };
        self.new_obj(Obj::Storage(Storage { dtype, key, numel }))
    }

    /// REDUCE: call an allowed global.
    fn call(&mut self, f: Global, args: Vec<Value>) -> Step {
        match (f, &args[..]) {
            (Global::OrderedDict, []) => self.new_obj(Obj::Dict(Vec::new())),
            (Global::Size, [dims]) => {
                let dims = self.tuple_of(dims, "torch.Size's argument")?;
                self.new_obj(Obj::Tuple(dims))
            }
            (Global::RebuildTensor, [s, off, size, stride])
            | (
                Global::RebuildTensorV2,
                [s, off, size, stride, _, _] | [s, off, size, stride, _, _, _],
            ) => {
                let storage = match s {
                    Value::Obj(i) => match &self.objs[*i] {
                        Obj::Storage(st) => st.clone(),
                        _ => return Err("a tensor whose storage is not a storage".into()),
                    },
                    _ => return Err("a tensor whose storage is not a storage".into()),
                };
                let shape = self.counts(size, "a tensor's size")?;
                let stride = self.counts(stride, "a tensor's stride")?;
                if shape.len() != stride.len() {
                    return Err(format!(
                        "a tensor of size {shape:?} with stride {stride:?} (ranks differ)"
                    ));
                }
                let offset = Self::count(off, "a tensor's storage offset")?;
                self.new_obj(Obj::Tensor(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                }))
            }
            (Global::RebuildParameter, [t, _, _] | [t, _, _, _])
                if matches!(self.objs_at(t), Some(Obj::Tensor(_))) =>
            {
                self.push(t.clone())
            }
            _ => Err(format!(
                "a call of {f:?} with {} arguments, which torch does not write",
                args.len()
            )),
        }
    }

    fn objs_at(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(*i),
            _ => None,
        }
    }

    fn op(&mut self, op: u8) -> Step {
        match op {
            0x80 => {
                let [p] = self.array()?;
                if p > 5 {
                    return Err(format!("pickle protocol {p} (5 is the newest)"));
                }
                Ok(None)
            }
            // FRAME: a length hint for buffered readers; everything is in memory already.
            0x95 => self.take(8).map(|_| None),
            b'.' => self.pop().map(Some),
            b'(' => {
                if self.marks.len() >= MAX_MARKS {
                    return Err(format!("marks nested deeper than {MAX_MARKS}"));
                }
                self.marks.push(self.stack.len());
                Ok(None)
            }
            b'0' => self.pop().map(|_| None),
            b'1' => self.pop_mark().map(|_| None),
            b'2' => {
                let top = self.pop()?;
                self.push(top.clone())?;
                self.push(top)
            }
            b'}' => self.new_obj(Obj::Dict(Vec::new())),
            b']' => self.new_obj(Obj::List(Vec::new())),
            b')' => self.new_obj(Obj::Tuple(Vec::new())),
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(v.into()))
            }
            b'K' => {
                let [v] = self.array()?;
                self.push(Value::Int(v.into()))
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(v.into()))
            }
            0x8a => {
                let [n] = self.array()?;
                let raw = self.payload(n.into())?;
                self.push(Self::int(raw))
            }
            0x8b => {
                let n = self.len_u32()?;
                let raw = self.payload(n)?;
                self.push(Self::int(raw))
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v))
            }
            b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                let n = match op {
                    b'X' | b'T' => self.len_u32()?,
                    0x8d => self.len_u64()?,
                    _ => self.array::<1>()?[0].into(),
                };
                let raw = self.payload(n)?;
                self.push(Value::Str(Self::text(raw)?))
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.len_u32()?,
                    0x8e => self.len_u64()?,
                    _ => self.array::<1>()?[0].into(),
                };
                let raw = self.payload(n)?;
                self.push(Value::Bytes(raw.into()))
            }
            b'q' => {
                let [k] = self.array()?;
                self.memo_put(k.into())
            }
            b'r' => {
                let k = u32::from_le_bytes(self.array()?);
                self.memo_put(k)
            }
            0x94 => {
                let k = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.memo_put(k)
            }
            b'h' => {
                let [k] = self.array()?;
                self.memo_get(k.into())
            }
            b'j' => {
                let k = u32::from_le_bytes(self.array()?);
                self.memo_get(k)
            }
            b't' => {
                let items = self.pop_mark()?;
                self.new_obj(Obj::Tuple(items))
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if self.stack.len() < self.floor() + n {
                    return Err("stack underflow".into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.new_obj(Obj::Tuple(items))
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.new_obj(Obj::List(items))
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.new_obj(Obj::Dict(Vec::new()))?;
                self.set_items(items)
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global(resolve(module, name)?))
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (&module, &name) {
                    (Value::Str(m), Value::Str(n)) => self.push(Value::Global(resolve(m, n)?)),
                    _ => Err("STACK_GLOBAL with names that are not strings".into()),
                }
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let args = self.tuple_of(&args, "a call's arguments")?;
                match self.pop()? {
                    // NEWOBJ builds an empty instance; of ours only a dict can be one.
                    Value::Global(Global::OrderedDict) if op == 0x81 && args.is_empty() => {
                        self.new_obj(Obj::Dict(Vec::new()))
                    }
                    Value::Global(f) if op == b'R' => self.call(f, args),
                    _ => Err("a call of something that is not an allowed global".into()),
                }
            }
            // BUILD sets an object's state (an OrderedDict's `_metadata`); we need none of it.
            b'b' => {
                self.pop()?;
                if self.stack.len() <= self.floor() {
                    return Err("BUILD with nothing to build".into());
                }
                Ok(None)
            }
            b'Q' => {
                let pid = self.pop()?;
                self.persistent(pid)
            }
            _ => Err(format!("unsupported pickle opcode 0x{op:02x}")),
        }
    }
}
