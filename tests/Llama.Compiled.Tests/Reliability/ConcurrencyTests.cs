using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// One loaded model, many sessions on many threads: the weights are shared read-only, each session's
/// tokens equal those it produces alone; one session used from two threads at once is detected.
/// </summary>
public sealed class ConcurrencyTests
{
    private const int Sessions = 8;
    private static readonly Tokenizer Tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);

    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily wanted to", "The dog was", "One day, a little bird",
        "Tom and his mom", "The sun was hot and", "There was a big tree", "Sam found a red ball",
    ];

    /// <summary>The i-th job: greedy for even i, sampled with seed i otherwise.</summary>
    private static GenerationOptions Options(int i) => new()
    {
        MaxNewTokens = 120,
        Sampling = i % 2 == 0
            ? new SamplingOptions { Temperature = 0f }
            : new SamplingOptions { Temperature = 1f, TopP = 0.9f, TopK = 40, Seed = (ulong)(1000 + i) },
    };

    private static (string Text, int[] Ids) Generate(Stories260K model, SessionOptions sessionOptions, int i)
    {
        using var session = model.CreateSession(sessionOptions);
        var generator = new TextGenerator(session, Tokenizer);
        string text = string.Concat(generator.Generate(Prompts[i], Options(i)));
        return (text, generator.SessionTokens.ToArray());
    }

    /// <summary>Runs <paramref name="work"/>(i) for i in [0, count) on count threads released at once.</summary>
    private static T[] RunAtOnce<T>(int count, Func<int, T> work)
    {
        var results = new T[count];
        var failures = new Exception?[count];
        using var start = new Barrier(count);
        var threads = new Thread[count];
        for (int t = 0; t < count; t++)
        {
            int i = t;
            threads[i] = new Thread(() =>
            {
                try
                {
                    start.SignalAndWait();
                    results[i] = work(i);
                }
                catch (Exception e)
                {
                    failures[i] = e;
                }
            });
            threads[i].Start();
        }
        foreach (Thread thread in threads)
            thread.Join();
        foreach (Exception? failure in failures)
        {
            if (failure is not null)
                throw new AggregateException("a concurrent session failed", failure);
        }
        return results;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void EightConcurrentGeneratorsProduceTheirSequentialText(int threadsPerSession)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        var options = new SessionOptions { Threads = threadsPerSession };
        var alone = Enumerable.Range(0, Sessions).Select(i => Generate(model, options, i)).ToArray();
        Assert.True(alone.Select(a => a.Text).Distinct().Count() > Sessions / 2, "the prompts should give different stories");

        for (int round = 0; round < 2; round++)
        {
            var together = RunAtOnce(Sessions, i => Generate(model, options, i));
            for (int i = 0; i < Sessions; i++)
            {
                Assert.Equal(alone[i].Ids, together[i].Ids);
                Assert.Equal(alone[i].Text, together[i].Text);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void EightConcurrentSamplerLoopsProduceTheirSequentialTokens(int threadsPerSession)
    {
        // Different prompt lengths (several prefill chunks) and seeds; greedy and sampled; 300 steps each.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        var options = new SessionOptions { Threads = threadsPerSession };
        int[][] prompts = Enumerable.Range(0, Sessions).Select(i => Reliability.Prompt(i, 1 + 23 * i)).ToArray();
        SamplingOptions Sampling(int i) => i % 2 == 0
            ? new SamplingOptions { Temperature = 0f }
            : new SamplingOptions { Temperature = 0.8f, TopP = 0.95f, Seed = (ulong)i };
        int[] Run(int i)
        {
            using var session = model.CreateSession(options);
            return Reliability.Decode(session, prompts[i], 300, Sampling(i));
        }

        int[][] alone = Enumerable.Range(0, Sessions).Select(Run).ToArray();
        int[][] together = RunAtOnce(Sessions, Run);
        for (int i = 0; i < Sessions; i++)
            Assert.Equal(alone[i], together[i]);
    }

    [Fact]
    public void ManySessionsOfOneModelGiveBitExactLogitsUnderLoad()
    {
        // 12 threads (more than the cores): every step's logits equal the single-threaded run's, bit for bit.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        int[] tokens = Reliability.Prompt(42, 200);
        float[] expected;
        using (var reference = model.CreateSession(new SessionOptions { Threads = 1 }))
        {
            foreach (int token in tokens)
                reference.Forward(token);
            expected = reference.Logits.ToArray();
        }

        bool[] ok = RunAtOnce(12, i =>
        {
            using var session = model.CreateSession(new SessionOptions { Threads = 1 + i % 2 });
            foreach (int token in tokens)
                session.Forward(token);
            return session.Logits.SequenceEqual(expected);
        });
        Assert.All(ok, Assert.True);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ConcurrentForwardOnOneSessionThrowsAndLeavesItUsable(int threads)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = threads });
        int[] prefill = Reliability.Prompt(7, Stories260K.MaxContext / 2);
        int collisions = 0, rounds = 0;
        var unexpected = new List<Exception>();

        static bool IsBusy(InvalidOperationException e) => e.Message.Contains("another thread", StringComparison.Ordinal);

        // Each round: one thread runs a long prefill while another hammers single-token Forward calls
        // (at most 100 successful ones, so that the context never fills). Whichever loses the race gets
        // InvalidOperationException; nothing else may happen. Bounded: stop at the first rounds with a collision.
        while (collisions < 3 && rounds < 500)
        {
            rounds++;
            session.Reset();
            int prefillDone = 0;
            using var go = new Barrier(2);
            var prefiller = new Thread(() =>
            {
                go.SignalAndWait();
                try
                {
                    session.Forward(prefill);
                }
                catch (InvalidOperationException e) when (IsBusy(e))
                {
                    Interlocked.Increment(ref collisions);
                }
                catch (Exception e)
                {
                    lock (unexpected)
                        unexpected.Add(e);
                }
                Volatile.Write(ref prefillDone, 1);
            });
            prefiller.Start();
            go.SignalAndWait();
            int successes = 0;
            while (Volatile.Read(ref prefillDone) == 0 && successes < 100)
            {
                try
                {
                    session.Forward(5);
                    successes++;
                }
                catch (InvalidOperationException e) when (IsBusy(e))
                {
                    Interlocked.Increment(ref collisions);
                }
                catch (Exception e)
                {
                    lock (unexpected)
                        unexpected.Add(e);
                    break;
                }
            }
            prefiller.Join();
        }

        Assert.Empty(unexpected);
        Assert.True(collisions > 0, $"no collision observed in {rounds} rounds");

        // The session still works, and exactly: the same logits as a session that never saw a collision.
        session.Reset();
        float[] after = session.Forward(prefill).ToArray();
        using var fresh = model.CreateSession(new SessionOptions { Threads = threads });
        Assert.Equal(fresh.Forward(prefill).ToArray(), after);
        Assert.Equal(prefill.Length, session.Position);
    }

    [Fact]
    public void SaveDuringForwardOnAnotherThreadIsDetected()
    {
        // Save/Restore take the same busy flag as Forward: a state is never saved half-written.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 1 });
        int[] prefill = Reliability.Prompt(9, Stories260K.MaxContext - 8);
        int collisions = 0;
        for (int round = 0; round < 500 && Volatile.Read(ref collisions) == 0; round++)
        {
            session.Reset();
            int done = 0;
            var prefiller = new Thread(() =>
            {
                try
                {
                    session.Forward(prefill);
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref collisions); // Save won the race
                }
                Volatile.Write(ref done, 1);
            });
            prefiller.Start();
            while (Volatile.Read(ref done) == 0)
            {
                try
                {
                    session.Save(System.IO.Stream.Null);
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref collisions);
                }
            }
            prefiller.Join();
        }
        Assert.True(collisions > 0);
    }

    [Fact]
    public void ResetDuringForwardOnAnotherThreadIsDetected()
    {
        // Reset changes the position that a running Forward is writing the cache at. Like Save and
        // Restore, it should take the session's busy flag and throw InvalidOperationException instead
        // of silently racing (the cache then holds a mix of two sequences and the Reset is lost).
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 1 });
        int[] prefill = Reliability.Prompt(11, Stories260K.MaxContext - 8);
        int detected = 0, rounds = 0;
        while (Volatile.Read(ref detected) == 0 && rounds++ < 200)
        {
            session.Reset();
            int done = 0;
            var prefiller = new Thread(() =>
            {
                try
                {
                    session.Forward(prefill);
                }
                catch (InvalidOperationException)
                {
                    // The Reset below raced ahead; either way is fine.
                }
                Volatile.Write(ref done, 1);
            });
            prefiller.Start();
            while (Volatile.Read(ref done) == 0)
            {
                try
                {
                    session.Reset();
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref detected);
                }
            }
            prefiller.Join();
        }
        Assert.True(detected > 0, $"Reset ran concurrently with Forward in {rounds} rounds without InvalidOperationException");
    }
}
