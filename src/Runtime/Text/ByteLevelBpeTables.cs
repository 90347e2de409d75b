using System;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Llama.Compiled;

/// <summary>
/// Token text → id, an open-addressing hash table that is looked up by <see cref="ReadOnlySpan{T}"/> of chars.
/// </summary>
/// <remarks>
/// Why not <c>Dictionary&lt;string, int&gt;</c>: reading a 128K-token vocabulary and resolving 280K merges (three
/// look-ups each) runs through these methods ~1M times while a process is young; the dictionary's methods then run as
/// unoptimized tier-0 code for most of the load (they are only promoted after the load has finished), while these are
/// compiled optimized at their first call (<see cref="MethodImplOptions.AggressiveOptimization"/>). Keys are compared
/// ordinally; the hash is not randomized (the keys are a model's fixed vocabulary: text being encoded only probes).
/// </remarks>
internal sealed class TokenTable
{
    // One array of entries: a probe reads the hash and the id from one place, and the key only when the hashes agree.
    private Entry[] _entries;
    private int _mask;

    private struct Entry
    {
        public string? Key;
        public int Hash;
        public int Id;
    }

    public TokenTable(int expectedCount)
    {
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, expectedCount * 2));
        _entries = new Entry[capacity];
        _mask = capacity - 1;
    }

    public int Count { get; private set; }

    /// <summary>Adds <paramref name="key"/> → <paramref name="id"/>; false (and the id already there) when the key is present.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryAdd(string key, int id, out int existing)
    {
        if ((Count + 1) * 2 > _entries.Length)
            Grow();
        int hash = Hash(key);
        Entry[] entries = _entries;
        int slot = hash & _mask;
        while (entries[slot].Key is string present)
        {
            if (entries[slot].Hash == hash && present == key)
            {
                existing = entries[slot].Id;
                return false;
            }
            slot = (slot + 1) & _mask;
        }
        entries[slot] = new Entry { Key = key, Hash = hash, Id = id };
        Count++;
        existing = -1;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryGetValue(ReadOnlySpan<char> key, out int id)
    {
        int hash = Hash(key);
        Entry[] entries = _entries;
        int mask = _mask;
        int slot = hash & mask;
        while (true)
        {
            ref Entry entry = ref entries[slot];
            if (entry.Key is not string present)
                break;
            if (entry.Hash == hash && key.SequenceEqual(present))
            {
                id = entry.Id;
                return true;
            }
            slot = (slot + 1) & mask;
        }
        id = -1;
        return false;
    }

    /// <summary>The smallest and the largest id (0 and -1 when empty).</summary>
    public (int Min, int Max) IdRange()
    {
        int min = 0, max = -1;
        foreach (Entry entry in _entries)
        {
            if (entry.Key is null)
                continue;
            min = Math.Min(min, entry.Id);
            max = Math.Max(max, entry.Id);
        }
        return (min, max);
    }

    /// <summary>Every key at its id in <paramref name="tokens"/>; two keys with one id are an error.</summary>
    public void CopyTo(string[] tokens, string source)
    {
        foreach (Entry entry in _entries)
        {
            if (entry.Key is not string key)
                continue;
            if ((uint)entry.Id >= (uint)tokens.Length)
                throw new ModelFormatException($"{source}: token \"{key}\" has the id {entry.Id}, outside 0..{tokens.Length - 1}");
            if (tokens[entry.Id] is string other)
                throw new ModelFormatException($"{source}: tokens \"{other}\" and \"{key}\" both have the id {entry.Id}");
            tokens[entry.Id] = key;
        }
    }

    private void Grow()
    {
        Entry[] old = _entries;
        _entries = new Entry[old.Length * 2];
        _mask = _entries.Length - 1;
        foreach (Entry entry in old)
        {
            if (entry.Key is null)
                continue;
            int slot = entry.Hash & _mask;
            while (_entries[slot].Key is not null)
                slot = (slot + 1) & _mask;
            _entries[slot] = entry;
        }
    }

    /// <summary>FNV-1a over the chars, then a final avalanche (the low bits pick the slot).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Hash(ReadOnlySpan<char> key)
    {
        uint h = 2166136261;
        foreach (char c in key)
            h = (h ^ c) * 16777619;
        h ^= h >> 15;
        h *= 0x2C1B3C6D;
        h ^= h >> 12;
        return (int)h;
    }
}

/// <summary>
/// Merge pair (left id, right id) → merge rank: open addressing over the 64-bit pair key with a multiplicative hash.
/// It is looked up for every adjacent pair at every merge step of encoding, and filled with up to ~300K merges at load.
/// </summary>
internal sealed class PairTable
{
    private const long Empty = -1;
    private readonly long[] _keys;
    private readonly int[] _ranks;
    private readonly int _shift;

    public PairTable(int count)
    {
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, count * 2));
        _keys = new long[capacity];
        _keys.AsSpan().Fill(Empty);
        _ranks = new int[capacity];
        _shift = 64 - BitOperations.Log2((uint)capacity);
    }

    public int Count { get; private set; }

    public static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Adds the pair unless it is present (the first rank of a repeated pair stays, as Hugging Face's merge map keeps it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void TryAdd(int left, int right, int rank)
    {
        long key = Key(left, right);
        int mask = _keys.Length - 1;
        int slot = Slot(key);
        while (true)
        {
            long present = _keys[slot];
            if (present == Empty)
            {
                if ((Count + 1) * 2 > _keys.Length)
                    throw new InvalidOperationException("The pair table is full.");
                _keys[slot] = key;
                _ranks[slot] = rank;
                Count++;
                return;
            }
            if (present == key)
                return;
            slot = (slot + 1) & mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetRank(int left, int right, out int rank)
    {
        long key = Key(left, right);
        long[] keys = _keys;
        int mask = keys.Length - 1;
        int slot = Slot(key);
        while (true)
        {
            long present = keys[slot];
            if (present == key)
            {
                rank = _ranks[slot];
                return true;
            }
            if (present == Empty)
            {
                rank = 0;
                return false;
            }
            slot = (slot + 1) & mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Slot(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> _shift);
}

/// <summary>Builds the merge tables (rank → left, right, merged id; pair → rank) from merges given as token texts.</summary>
internal sealed class MergeTableBuilder
{
    private readonly string _source;
    private readonly TokenTable _vocabulary;
    private int[] _left, _right, _result;
    private char[] _scratch = new char[256];

    public MergeTableBuilder(string source, TokenTable vocabulary, int expectedCount)
    {
        _source = source;
        _vocabulary = vocabulary;
        _left = new int[Math.Max(16, expectedCount)];
        _right = new int[_left.Length];
        _result = new int[_left.Length];
    }

    public int Count { get; private set; }

    /// <summary>A buffer of at least <paramref name="length"/> chars for the caller to write a merge into.</summary>
    public Span<char> Scratch(int length)
    {
        if (_scratch.Length < length)
            Array.Resize(ref _scratch, Math.Max(length, _scratch.Length * 2)); // keeps what the caller wrote so far
        return _scratch;
    }

    /// <summary>Adds the next merge, written as <c>"a b"</c> (<paramref name="space"/> is the index of the separating space); <paramref name="merge"/> is overwritten.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Add(Span<char> merge, int space)
    {
        int rank = Count;
        if (rank == _left.Length)
        {
            Array.Resize(ref _left, rank * 2);
            Array.Resize(ref _right, rank * 2);
            Array.Resize(ref _result, rank * 2);
        }
        if (!_vocabulary.TryGetValue(merge[..space], out int left) || !_vocabulary.TryGetValue(merge[(space + 1)..], out int right))
            throw new ModelFormatException($"{_source}: merge {rank} (\"{merge}\") names a token that is not in the vocabulary");
        // "a b" → "ab" in place.
        merge[(space + 1)..].CopyTo(merge[space..]);
        if (!_vocabulary.TryGetValue(merge[..^1], out int result))
            throw new ModelFormatException($"{_source}: merge {rank} makes \"{merge[..^1]}\", which is not in the vocabulary");
        _left[rank] = left;
        _right[rank] = right;
        _result[rank] = result;
        Count = rank + 1;
    }

    /// <summary>Adds a merge given as a <c>"a b"</c> string (a GGUF file's or an older tokenizer.json's form).</summary>
    public void Add(ReadOnlySpan<char> merge)
    {
        int space = merge.Length > 1 ? merge[1..].IndexOf(' ') + 1 : 0;
        if (space <= 0 || space == merge.Length - 1)
            throw new ModelFormatException($"{_source}: merge {Count} (\"{merge}\") is not two tokens separated by a space");
        Span<char> copy = Scratch(merge.Length)[..merge.Length];
        merge.CopyTo(copy);
        Add(copy, space);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public (int[] Left, int[] Right, int[] Result, PairTable Ranks) Build()
    {
        int count = Count;
        Array.Resize(ref _left, count);
        Array.Resize(ref _right, count);
        Array.Resize(ref _result, count);
        var ranks = new PairTable(count);
        for (int rank = 0; rank < count; rank++)
            ranks.TryAdd(_left[rank], _right[rank], rank);
        return (_left, _right, _result, ranks);
    }
}
