using System;
using System.ComponentModel;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// A forward pass through a compiled model for up to <see cref="Rows"/> tokens at once: the activation buffers of that
/// many rows and the layers that fill them, generated per model (its nested <c>Pass</c> class). Each row is one token of
/// some sequence, at its own position, appending to and attending over that sequence's KV cache (<see cref="PassRows"/>),
/// so a session's prefill chunk and several sessions' tokens (a <see cref="LlamaBatch"/>) run the same code, and every
/// weight matrix is read once per pass for all rows. Not thread-safe: its owner runs one pass at a time.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public abstract class ForwardPass
{
    private readonly int _hiddenSize;

    /// <summary>Allocates the buffers the runtime reads back (the final hidden states) for <paramref name="rows"/> rows.</summary>
    /// <param name="pool">The threads that run the pass's kernels.</param>
    /// <param name="rows">Most rows per pass.</param>
    /// <param name="hiddenSize">The model's HiddenSize.</param>
    protected ForwardPass(WorkerPool pool, int rows, int hiddenSize)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(hiddenSize, 1);
        Pool = pool;
        Rows = rows;
        _hiddenSize = hiddenSize;
        Normed = new float[rows * hiddenSize];
    }

    /// <summary>The threads that run the kernels.</summary>
    public WorkerPool Pool { get; }

    /// <summary>Most rows per pass (the activation buffers' rows).</summary>
    public int Rows { get; }

    /// <summary>
    /// [Rows, HiddenSize]: after a pass, row i is output i's final hidden state after the final RMSNorm ⊙ model.norm (the
    /// classifier's input).
    /// </summary>
    protected float[] Normed { get; }

    /// <summary>Output <paramref name="output"/>'s final hidden state after the final RMSNorm [HiddenSize], valid until the next pass.</summary>
    public ReadOnlySpan<float> NormedHidden(int output) => Normed.AsSpan(output * _hiddenSize, _hiddenSize);

    /// <summary>
    /// Evaluates <paramref name="rows"/> through every layer, appending each row's keys and values to its cache, and writes
    /// the outputs' final hidden states (<see cref="NormedHidden"/>) and, when <paramref name="logits"/> is given, their
    /// logits into it: [OutputCount, VocabSize], output by output.
    /// </summary>
    public void Evaluate(PassRows rows, float[]? logits)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count < 1 || rows.Count > Rows)
            throw new ArgumentException($"A pass evaluates 1 to {Rows} rows, not {rows.Count}.", nameof(rows));
        if (logits is not null && rows.OutputCount == 0)
            throw new ArgumentException("Logits are asked for, but no row is an output.", nameof(logits));
        EvaluateRows(rows, logits);
    }

    /// <summary>The generated forward pass of <see cref="Evaluate"/>; <paramref name="rows"/> are known to fit.</summary>
    protected abstract void EvaluateRows(PassRows rows, float[]? logits);
}
