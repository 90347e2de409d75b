using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>Cancellation between tokens in every generation API; disposal of models and sessions in any order and under races.</summary>
public sealed class CancellationAndDisposalTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly Tokenizer Tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);

    /// <summary>A long sampled generation (the tests cancel it long before it could end by itself).</summary>
    private static readonly GenerationOptions Long = new() { MaxNewTokens = 400, Sampling = new SamplingOptions { Temperature = 1f, Seed = 11 } };

    [Fact]
    public void GenerateStopsAtTheNextTokenAfterCancellation()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, Tokenizer);
        using var cts = new CancellationTokenSource();
        int chunks = 0;
        int positionAtCancel = -1;
        Assert.Throws<OperationCanceledException>(() =>
        {
            foreach (string _ in generator.Generate("Once upon a time", Long, cts.Token))
            {
                if (++chunks == 10)
                {
                    cts.Cancel();
                    positionAtCancel = session.Position;
                }
            }
        });
        Assert.Equal(10, chunks);                               // no chunk after the cancellation
        Assert.Equal(positionAtCancel, session.Position);       // and no forward pass either
        Assert.Equal(StopReason.Cancelled, generator.LastStats!.StopReason);

        // The generator and the session are reusable afterwards.
        string text = string.Concat(generator.Generate("Once upon a time", new GenerationOptions { MaxNewTokens = 20 }));
        Assert.NotEmpty(text);
    }

    [Fact]
    public void AlreadyCancelledTokenEvaluatesNothing()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        session.Forward([1, 2, 3]);
        var generator = new TextGenerator(session, Tokenizer);
        var cancelled = new CancellationToken(canceled: true);
        Assert.Throws<OperationCanceledException>(() => generator.Generate("Once", Long, cancelled).ToList());
        Assert.Throws<OperationCanceledException>(() => generator.GenerateText("Once", Long, cancelled));
        Assert.Equal(3, session.Position); // not reset, not evaluated
    }

    [Fact]
    public async Task GenerateAsyncStopsAtTheNextTokenAfterCancellation()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, Tokenizer);

        // Through the method's token.
        using (var cts = new CancellationTokenSource())
        {
            int chunks = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (string _ in generator.GenerateAsync("Once upon a time", Long, cts.Token))
                {
                    if (++chunks == 7)
                        cts.Cancel();
                }
            });
            Assert.Equal(7, chunks);
            Assert.Equal(StopReason.Cancelled, generator.LastStats!.StopReason);
        }

        // Through WithCancellation.
        using (var cts = new CancellationTokenSource())
        {
            int chunks = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (string _ in generator.GenerateAsync("Once upon a time", Long).WithCancellation(cts.Token))
                {
                    if (++chunks == 5)
                        cts.Cancel();
                }
            });
            Assert.Equal(5, chunks);
        }

        // Cancelled from another thread while the enumeration is suspended between two tokens.
        using (var cts = new CancellationTokenSource())
        {
            int chunks = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (string _ in generator.GenerateAsync("Once upon a time", Long, cts.Token))
                {
                    if (++chunks == 3)
                    {
                        var canceller = new Thread(cts.Cancel);
                        canceller.Start();
                        canceller.Join();
                    }
                }
            });
            Assert.Equal(3, chunks);
        }

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateTextAsync("Once", Long, new CancellationToken(canceled: true)));
    }

    [Fact]
    public async Task ChatClientHonoursCancellationAndStaysUsable()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        var options = new GenerationOptions { MaxNewTokens = 300, Sampling = new SamplingOptions { Temperature = 1f, Seed = 5 } };
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, options);
        ChatMessage[] hello = [new(ChatRole.User, "Once upon a time")];

        using (var cts = new CancellationTokenSource())
        {
            int updates = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (ChatResponseUpdate _ in client.GetStreamingResponseAsync(hello, cancellationToken: cts.Token))
                {
                    if (++updates == 3)
                        cts.Cancel();
                }
            });
            Assert.Equal(3, updates);
        }
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(hello, cancellationToken: new CancellationToken(true)));

        // Two requests at once on one client are serialized, not collided.
        Task<ChatResponse>[] both = [Task.Run(() => client.GetResponseAsync(hello)), Task.Run(() => client.GetResponseAsync(hello))];
        ChatResponse[] responses = await Task.WhenAll(both);
        Assert.All(responses, r => Assert.NotNull(r.Text));
    }

    [Fact]
    public void DisposedModelMakesEverySessionCallThrowObjectDisposed()
    {
        var model = Stories260K.Load(TestPaths.Stories260KHf);
        var sessions = Enumerable.Range(0, 4).Select(i => model.CreateSession(new SessionOptions { Threads = 1 + i % 2 })).ToArray();
        foreach (var s in sessions)
            s.Forward([1, 403, 407]);
        var generator = new TextGenerator(sessions[0], Tokenizer);
        model.Dispose();

        foreach (var s in sessions)
        {
            Assert.Throws<ObjectDisposedException>(() => s.Forward(5));
            Assert.Throws<ObjectDisposedException>(() => s.Forward([5, 6, 7]));
            Assert.Equal(3, s.Position);
            // The session's own state is still its own: it can be reset, saved and disposed.
            s.Save(System.IO.Stream.Null);
            s.Reset();
        }
        Assert.Throws<ObjectDisposedException>(() => model.CreateSession());
        Assert.Throws<ObjectDisposedException>(() => generator.Generate("Once").ToList());
        Assert.Throws<ObjectDisposedException>(() => model.AsChatClient(Tokenizer, ChatTemplate.Plain));

        model.Dispose(); // twice is fine
        foreach (var s in sessions)
        {
            s.Dispose();
            s.Dispose(); // twice is fine
            Assert.Throws<ObjectDisposedException>(() => s.Forward(5));
        }
    }

    [Fact]
    public void DisposedSessionThrowsObjectDisposedAndLeavesTheModelUsable()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        var session = model.CreateSession(new SessionOptions { Threads = 2 });
        session.Forward(1);
        session.Dispose();
        session.Dispose();
        Assert.Throws<ObjectDisposedException>(() => session.Forward(1));
        Assert.Throws<ObjectDisposedException>(() => session.Forward([1, 2]));
        Assert.Throws<ObjectDisposedException>(() => session.Save(new System.IO.MemoryStream()));
        Assert.Throws<ObjectDisposedException>(() => session.Restore(new System.IO.MemoryStream(new byte[64])));
        using var other = model.CreateSession();
        Assert.Equal(Stories260K.VocabSize, other.Forward(1).Length);
    }

    [Fact]
    public void DisposingTheModelDuringForwardLoopsOnOtherThreadsNeverCrashes()
    {
        // A few hundred races: threads decode (single tokens and prefills) while the model is disposed
        // after a varying delay. Each thread must end with ObjectDisposedException at a call boundary:
        // never an access violation (that would kill the test host), never another exception.
        const int Races = 200;
        int disposedMidLoop = 0;
        for (int race = 0; race < Races; race++)
        {
            var model = Stories260K.Load(TestPaths.Stories260KHf);
            int workers = 2 + race % 2;
            var sessions = Enumerable.Range(0, workers).Select(i => model.CreateSession(new SessionOptions { Threads = 1 + (race + i) % 2 })).ToArray();
            var outcome = new Exception?[workers];
            var calls = new int[workers];
            using var started = new CountdownEvent(workers);
            var threads = new Thread[workers];
            for (int w = 0; w < workers; w++)
            {
                int i = w;
                threads[i] = new Thread(() =>
                {
                    Stories260K.Session s = sessions[i];
                    int token = 1;
                    started.Signal();
                    try
                    {
                        while (true)
                        {
                            if (s.Position + 40 > Stories260K.MaxContext)
                                s.Reset();
                            ReadOnlySpan<float> logits = (calls[i] % 5 == 4) ? s.Forward([token, 3, 4, 5, 6, 7, 8, 9, .. Enumerable.Repeat(10, 30)]) : s.Forward(token);
                            token = Reliability.ArgMax(logits);
                            calls[i]++;
                        }
                    }
                    catch (Exception e)
                    {
                        outcome[i] = e;
                    }
                });
                threads[i].Start();
            }
            started.Wait();
            // Vary where in the loop the disposal lands: from immediately to a few hundred microseconds.
            Thread.SpinWait(race * 97 % 20_000);
            model.Dispose();
            foreach (Thread t in threads)
                Assert.True(t.Join(TimeSpan.FromSeconds(30)), "a session thread did not stop after the model was disposed");
            for (int i = 0; i < workers; i++)
            {
                Assert.IsType<ObjectDisposedException>(outcome[i]);
                if (calls[i] > 0)
                    disposedMidLoop++;
                sessions[i].Dispose();
            }
        }
        output.WriteLine($"{disposedMidLoop} of the session threads had run at least one Forward when the model was disposed");
        Assert.True(disposedMidLoop > Races / 2, $"only {disposedMidLoop} disposals landed after the loops started");
    }

    [Fact]
    public void DisposingTheModelWhileOtherThreadsCreateSessionsNeverCrashes()
    {
        for (int race = 0; race < 100; race++)
        {
            var model = Stories260K.Load(TestPaths.Stories260KHf);
            Exception? failure = null;
            var creator = new Thread(() =>
            {
                try
                {
                    while (true)
                    {
                        using var s = model.CreateSession(new SessionOptions { Threads = 1 });
                        s.Forward(1);
                    }
                }
                catch (Exception e)
                {
                    failure = e;
                }
            });
            creator.Start();
            Thread.SpinWait(race * 331 % 30_000);
            model.Dispose();
            Assert.True(creator.Join(TimeSpan.FromSeconds(30)));
            Assert.IsType<ObjectDisposedException>(failure);
        }
    }

    [Fact]
    public void ConcurrentModelDisposeCallsAreFine()
    {
        for (int race = 0; race < 50; race++)
        {
            var model = Stories260K.Load(TestPaths.Stories260KHf);
            using var session = model.CreateSession(new SessionOptions { Threads = 1 });
            session.Forward(1);
            Parallel.For(0, 4, _ => model.Dispose());
            Assert.Throws<ObjectDisposedException>(() => session.Forward(1));
        }
    }

    [Fact]
    public void DisposingASessionWhileItRunsOnAnotherThreadIsRefusedNotTornDown()
    {
        // Session.Dispose during a Forward on another thread throws InvalidOperationException (it would
        // otherwise stop the worker pool under the running pass); the session finishes its work, and a
        // later Dispose succeeds. If Dispose wins the race, the other thread gets ObjectDisposedException, or
        // InvalidOperationException if it arrived while Dispose was checking.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        int[] prefill = Reliability.Prompt(12, Stories260K.MaxContext - 8);
        int refused = 0;
        for (int round = 0; round < 200 && refused == 0; round++)
        {
            var session = model.CreateSession(new SessionOptions { Threads = 2 });
            Exception? forwardFailure = null;
            int done = 0;
            var runner = new Thread(() =>
            {
                try
                {
                    session.Forward(prefill);
                }
                catch (Exception e)
                {
                    forwardFailure = e;
                }
                Volatile.Write(ref done, 1);
            });
            runner.Start();
            bool disposed = false;
            while (!disposed)
            {
                try
                {
                    session.Dispose();
                    disposed = true;
                }
                catch (InvalidOperationException)
                {
                    refused++;
                }
            }
            runner.Join();
            // A Forward that starts while Dispose holds the session is refused the same way (the two calls collided).
            Assert.True(forwardFailure is null or ObjectDisposedException or InvalidOperationException, $"Forward failed with {forwardFailure}");
            Assert.Throws<ObjectDisposedException>(() => session.Forward(1));
        }
        Assert.True(refused > 0, "Dispose never collided with a running Forward");
    }
}
