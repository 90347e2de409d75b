using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// <see cref="LlamaBatch"/> on compiled models: whatever the layout of the passes (one pass or several, a prefill beside
/// decode tokens, 1 or 2 threads), each session ends where its own <see cref="ILlamaSession.Forward(ReadOnlySpan{int})"/>
/// would have left it — position, KV cache, logits — to float rounding, and greedy decoding picks the same tokens.
/// </summary>
public sealed class LlamaBatchTests
{
    /// <summary>
    /// Batch and solo differ only where a matrix kernel groups a token's row with other rows (4-token tiles) rather than
    /// alone, which changes the order of float sums: ~1e-6 of the logits' scale. A wrong position, cache or row mix-up
    /// moves logits by far more than this.
    /// </summary>
    private const float RelativeTolerance = 1e-4f;

    public static TheoryData<int, int> ThreadsAndMaxTokens => new()
    {
        { 1, 64 },
        { 2, 64 },
        { 1, 7 },   // several passes per call; the prefill is split across passes
        { 2, 13 },
    };

    [Theory]
    [MemberData(nameof(ThreadsAndMaxTokens))]
    public void PrefillBesideDecodeTokensThenGreedyStepsEqualEachSessionAlone(int threads, int maxTokens)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        RunBatchAgainstSolo(model, threads, maxTokens, sessions: 6, steps: 30);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void QuantizedModelsBatchAsTheirSessionsRunAlone(int threads)
    {
        using (var q8 = Stories260KQ8.Load(TestPaths.Stories260KHf))
            RunBatchAgainstSolo(q8, threads, maxTokens: 16, sessions: 5, steps: 12);
        using (var q4 = Stories260KQ4.Load(TestPaths.Stories260KHf))
            RunBatchAgainstSolo(q4, threads, maxTokens: 64, sessions: 5, steps: 12);
    }

    [Fact]
    public void ShiftingSessionsAtTheContextEndShiftAsTheirOwnForwardDoes()
    {
        using var model = Stories260KShort.Load(TestPaths.Stories260KHf);
        int max = Stories260KShort.MaxContext;
        var options = new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1, Threads = 1 };
        // Session 0 fills up with one decode token, session 1 with a prefill of 20 that needs more than half dropped
        // (KeepTokens 1), session 2 does not need to shift.
        int[][] prompts = [Reliability.Prompt(1, max), Reliability.Prompt(2, max - 5), Reliability.Prompt(3, 40)];
        int[][] next = [[5], Reliability.Prompt(4, 20), [7, 8]];
        var batched = prompts.Select(_ => model.CreateSession(options)).ToArray();
        var alone = prompts.Select(_ => model.CreateSession(options)).ToArray();
        using var batch = model.CreateBatch(new BatchOptions { Threads = 1, MaxTokens = 16 });
        try
        {
            for (int i = 0; i < prompts.Length; i++)
            {
                batched[i].Forward(prompts[i]);
                alone[i].Forward(prompts[i]);
            }
            batch.Forward(next.Select((tokens, i) => new BatchItem(batched[i], tokens)).ToArray());
            for (int i = 0; i < prompts.Length; i++)
            {
                alone[i].Forward(next[i]);
                AssertSameState(alone[i], batched[i], $"session {i}");
            }
            Assert.True(batched[0].Position < max && batched[1].Position < max - 5, "the sessions shifted");

            // And they go on decoding together past the shift.
            for (int step = 0; step < 10; step++)
            {
                var items = new BatchItem[prompts.Length];
                for (int i = 0; i < prompts.Length; i++)
                {
                    int token = Reliability.ArgMax(alone[i].Logits);
                    Assert.Equal(token, Reliability.ArgMax(batched[i].Logits));
                    items[i] = new BatchItem(batched[i], new[] { token });
                    alone[i].Forward(token);
                }
                batch.Forward(items);
                for (int i = 0; i < prompts.Length; i++)
                    AssertSameState(alone[i], batched[i], $"session {i}, step {step}");
            }
        }
        finally
        {
            foreach (var session in batched.Concat(alone))
                session.Dispose();
        }
    }

    [Fact]
    public void InvalidItemsAreRejectedBeforeAnySessionChanges()
    {
        using var model = Stories260KShort.Load(TestPaths.Stories260KHf);
        using var other = Stories260KShort.Load(TestPaths.Stories260KHf);
        int max = Stories260KShort.MaxContext;
        using var a = model.CreateSession();
        using var shifting = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift });
        using var full = model.CreateSession(); // Overflow = Throw
        using var foreign = other.CreateSession();
        a.Forward(Reliability.Prompt(1, 10));
        shifting.Forward(Reliability.Prompt(2, max)); // its next item would shift it
        full.Forward(Reliability.Prompt(3, max - 2));
        using var batch = model.CreateBatch(new BatchOptions { Threads = 1, MaxTokens = 8 });
        ILlamaSession[] sessions = [a, shifting, full];
        byte[][] before = sessions.Select(Snapshot).ToArray();

        void Rejected<TException>(params BatchItem[] items) where TException : Exception
        {
            Assert.Throws<TException>(() => batch.Forward(items));
            for (int i = 0; i < sessions.Length; i++)
                Assert.Equal(before[i], Snapshot(sessions[i]));
        }

        int[] one = [9];
        Rejected<ArgumentOutOfRangeException>(new(a, one), new(shifting, one), new(full, new[] { 4, Stories260KShort.VocabSize }));
        Rejected<ArgumentOutOfRangeException>(new(shifting, one), new(a, new[] { -1 }));
        Rejected<InvalidOperationException>(new(a, one), new(shifting, one), new(full, new[] { 1, 2, 3 })); // full: 3 > 2 left
        Rejected<InvalidOperationException>(new(a, one), new(shifting, Reliability.Prompt(5, max + 1))); // more than a shift frees
        Rejected<ArgumentException>(new(a, one), new(shifting, ReadOnlyMemory<int>.Empty));
        Rejected<ArgumentException>(new(a, one), new(shifting, one), new(a, one));
        Rejected<ArgumentException>(new(a, one), new(foreign, one));

        // Valid items still work after all that, and the full session fits its last 2 tokens.
        batch.Forward([new(a, one), new(full, new[] { 1, 2 })]);
        Assert.Equal(11, a.Position);
        Assert.Equal(max, full.Position);
    }

    [Fact]
    public void DisposedSessionsModelsAndBatchesThrowObjectDisposed()
    {
        var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var live = model.CreateSession();
        var gone = model.CreateSession();
        gone.Dispose();
        var batch = model.CreateBatch(new BatchOptions { Threads = 1 });
        int[] one = [1];
        Assert.Throws<ObjectDisposedException>(() => batch.Forward([new(live, one), new(gone, one)]));
        Assert.Equal(0, live.Position);
        batch.Forward([new(live, one)]);
        Assert.Equal(1, live.Position);

        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => batch.Forward([new(live, one)]));
        Assert.Equal(1, live.Position);
        batch.Dispose();
        Assert.Throws<ObjectDisposedException>(() => batch.Forward([new(live, one)]));
        Assert.Throws<ObjectDisposedException>(() => model.CreateBatch());
    }

    [Fact]
    public void ASessionInUseOnAnotherThreadIsRejectedAndTheOthersStayAsTheyWere()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var busy = model.CreateSession(new SessionOptions { Threads = 1 });
        using var bystander = model.CreateSession(new SessionOptions { Threads = 1 });
        using var batch = model.CreateBatch(new BatchOptions { Threads = 1 });
        int[] prefill = Reliability.Prompt(7, 200);
        int collisions = 0;
        bool stop = false;
        var worker = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                try
                {
                    busy.Reset();
                    busy.Forward(prefill);
                }
                catch (InvalidOperationException)
                {
                    // The batch held it.
                }
            }
        });
        worker.Start();
        try
        {
            for (int round = 0; round < 2000 && collisions < 3; round++)
            {
                if (bystander.Position > 400)
                    bystander.Reset();
                int position = bystander.Position;
                try
                {
                    // The bystander comes first: the batch has taken it when it finds the other one busy.
                    batch.Forward([new(bystander, new[] { 3 }), new(busy, new[] { 4 })]);
                    Assert.Equal(position + 1, bystander.Position);
                }
                catch (InvalidOperationException e) when (e.Message.Contains("another thread", StringComparison.Ordinal))
                {
                    collisions++;
                    Assert.Equal(position, bystander.Position);
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            worker.Join();
        }
        Assert.True(collisions > 0, "the batch never met the session in use");
        bystander.Forward(5); // and it is free again
    }

    [Fact]
    public void LogitsOfEveryItemAreItsLastTokens()
    {
        // Two sessions at the same position with the same tokens get the same logits wherever their rows are.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var a = model.CreateSession();
        using var b = model.CreateSession();
        using var c = model.CreateSession();
        using var batch = model.CreateBatch(new BatchOptions { Threads = 1, MaxTokens = 9 });
        int[] prompt = Reliability.Prompt(11, 12);
        batch.Forward([new(a, prompt), new(b, new[] { 1 }), new(c, prompt)]);
        Assert.Equal(12, a.Position);
        Assert.Equal(1, b.Position);
        Assert.Equal(12, c.Position);
        using var alone = model.CreateSession();
        AssertClose(alone.Forward(prompt), a.Logits, "a");
        AssertClose(alone.Logits, c.Logits, "c");
        alone.Reset();
        AssertClose(alone.Forward(1), b.Logits, "b");
    }

    /// <summary>
    /// Sessions at different positions (prompts of different lengths, evaluated by each session's own Forward); then one
    /// batch call with a fresh session's 20-token prefill beside the others' decode tokens; then greedy steps through the
    /// batch. The twin sessions do the same alone.
    /// </summary>
    private static void RunBatchAgainstSolo(ILlamaModel model, int threads, int maxTokens, int sessions, int steps)
    {
        var batched = new ILlamaSession[sessions];
        var alone = new ILlamaSession[sessions];
        try
        {
            for (int i = 0; i < sessions; i++)
            {
                batched[i] = model.CreateSession();
                alone[i] = model.CreateSession();
                if (i == 0)
                    continue; // the one that prefills in the batch
                int[] prompt = Reliability.Prompt(100 + i, 3 + 7 * i);
                batched[i].Forward(prompt);
                alone[i].Forward(prompt);
            }
            using var batch = model.CreateBatch(new BatchOptions { Threads = threads, MaxTokens = maxTokens });

            // The prefill sits between decode tokens.
            var items = new BatchItem[sessions];
            int[] prefill = Reliability.Prompt(99, 20);
            for (int i = 0; i < sessions; i++)
            {
                int[] tokens = i == 0 ? prefill : [Reliability.ArgMax(alone[i].Logits)];
                items[(i + 2) % sessions] = new BatchItem(batched[i], tokens);
                alone[i].Forward(tokens);
            }
            batch.Forward(items);
            for (int i = 0; i < sessions; i++)
                AssertSameState(alone[i], batched[i], $"session {i} after the mixed pass");

            for (int step = 0; step < steps; step++)
            {
                for (int i = 0; i < sessions; i++)
                {
                    int token = Reliability.ArgMax(alone[i].Logits);
                    Assert.True(token == Reliability.ArgMax(batched[i].Logits), $"session {i}, step {step}: greedy tokens differ");
                    items[i] = new BatchItem(batched[i], new[] { token });
                    alone[i].Forward(token);
                }
                batch.Forward(items);
                for (int i = 0; i < sessions; i++)
                    AssertClose(alone[i].Logits, batched[i].Logits, $"session {i}, step {step}");
            }
            for (int i = 0; i < sessions; i++)
                AssertSameState(alone[i], batched[i], $"session {i} at the end");
        }
        finally
        {
            foreach (ILlamaSession? session in batched.Concat(alone))
                session?.Dispose();
        }
    }

    /// <summary>Same position, and logits and KV cache (as <see cref="ILlamaSession.Save"/> writes them) equal to the tolerance.</summary>
    private static void AssertSameState(ILlamaSession expected, ILlamaSession actual, string what)
    {
        Assert.Equal(expected.Position, actual.Position);
        AssertClose(expected.Logits, actual.Logits, what + " logits");
        // Save: a header of 12 ints and the fingerprint, then logits and cache as F32.
        float[] e = MemoryMarshal.Cast<byte, float>(Snapshot(expected).AsSpan(56)).ToArray();
        float[] a = MemoryMarshal.Cast<byte, float>(Snapshot(actual).AsSpan(56)).ToArray();
        Assert.Equal(e.Length, a.Length);
        AssertClose(e, a, what + " state");
    }

    private static byte[] Snapshot(ILlamaSession session)
    {
        var stream = new MemoryStream();
        session.Save(stream);
        return stream.ToArray();
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = 0, max = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(expected[i]));
            max = Math.Max(max, Math.Abs(expected[i] - actual[i]));
        }
        Assert.True(scale > 0.1f, $"{what}: the values are all near zero");
        Assert.True(max <= RelativeTolerance * scale, $"{what}: max |diff| {max} exceeds {RelativeTolerance} × {scale}");
    }
}
