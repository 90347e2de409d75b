using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The rows of one <see cref="ForwardPass"/>: per row a token, the KV cache of the sequence it belongs to and its position
/// there, and which rows' outputs (final hidden state, logits) are wanted. A session's prefill chunk is consecutive rows
/// of one cache; a batch puts several sessions' rows side by side. Rows of one cache are in position order, so a row
/// attends to what the rows before it appended.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PassRows
{
    private readonly int[] _tokens;      // [Capacity]
    private readonly int[] _positions;   // [Capacity]
    private readonly KvCache[] _caches;  // [Capacity]
    private readonly int[] _outputs;     // [Capacity] the rows whose outputs are wanted, in row order

    /// <summary>Room for <paramref name="capacity"/> rows.</summary>
    public PassRows(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _tokens = new int[capacity];
        _positions = new int[capacity];
        _caches = new KvCache[capacity];
        _outputs = new int[capacity];
    }

    /// <summary>Most rows.</summary>
    public int Capacity => _tokens.Length;

    /// <summary>Rows added since the last <see cref="Clear"/>.</summary>
    public int Count { get; private set; }

    /// <summary>Rows whose outputs are wanted.</summary>
    public int OutputCount { get; private set; }

    /// <summary>Σ (position + 1) over the rows: the cache positions attention reads per query head, a measure of its work.</summary>
    public long AttendedPositions { get; private set; }

    /// <summary>Removes every row (the caches are not touched).</summary>
    public void Clear()
    {
        Array.Clear(_caches, 0, Count); // no references to caches of sessions that may be gone
        Count = 0;
        OutputCount = 0;
        AttendedPositions = 0;
    }

    /// <summary>Adds a row: <paramref name="token"/> at <paramref name="position"/> of <paramref name="cache"/>.</summary>
    /// <param name="token">The token id (checked against the vocabulary by the caller).</param>
    /// <param name="cache">The sequence's KV cache; the pass appends the row's keys and values at <paramref name="position"/>.</param>
    /// <param name="position">Where the row's keys and values go; the row attends to [0, position].</param>
    /// <param name="output">Whether the pass writes this row's final hidden state (and logits, when asked for).</param>
    public void Add(int token, KvCache cache, int position, bool output)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (Count == Capacity)
            throw new InvalidOperationException($"The pass has room for {Capacity} rows.");
        if ((uint)position >= (uint)cache.MaxContext)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"must be in [0, {cache.MaxContext})");
        _tokens[Count] = token;
        _positions[Count] = position;
        _caches[Count] = cache;
        if (output)
            _outputs[OutputCount++] = Count;
        AttendedPositions += position + 1;
        Count++;
    }

    /// <summary>The token of row <paramref name="row"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Token(int row) => _tokens[row];

    /// <summary>The position of row <paramref name="row"/> in its cache.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Position(int row) => _positions[row];

    /// <summary>The KV cache of row <paramref name="row"/>'s sequence.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public KvCache Cache(int row) => _caches[row];

    /// <summary>The row of output <paramref name="output"/> (outputs are numbered in row order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int OutputRow(int output) => _outputs[output];
}
