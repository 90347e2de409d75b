using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Text;
using System.Text.Json;
using System.Threading;
using Llama.Compiled;
using Llama.Compiled.LlamaCpp;

namespace LlamaBench;

/// <summary>One row of the --batch table: one model, format, thread count and number of sequences decoding together.</summary>
internal sealed record BatchRow(string Model, string Format, int Threads, int Sequences, int Steps,
    double? Ours, double? LlamaCpp, double? OursSequential, int Runs, string? Note)
{
    /// <summary>Ours ÷ llama.cpp.</summary>
    public double? Ratio => Divide(Ours, LlamaCpp);

    /// <summary>Ours at this N ÷ ours at N = 1 (set once the N = 1 row of the same model, format and threads is known).</summary>
    public double? OursScaling { get; init; }

    /// <summary>llama.cpp at this N ÷ llama.cpp at N = 1.</summary>
    public double? LlamaScaling { get; init; }

    /// <summary>What batching buys ours: batched ÷ the same N sessions decoding one after another.</summary>
    public double? BatchingGain => Divide(Ours, OursSequential);

    public static double? Divide(double? a, double? b) => a is double x && b is double y && y > 0 ? x / y : null;
}

/// <summary>
/// --batch: aggregate decode throughput with N sequences decoding together. Each sequence i is prefilled (untimed) with its
/// own prompt of P + i tokens (BOS and random ids, a seed per sequence), so the sequences sit at different positions; then
/// S steps each evaluate one token per sequence, the greedy argmax of that sequence's logits (argmax included in the time,
/// the same code for both engines). Aggregate t/s = N·S ÷ the time of the S steps.
/// Ours: N sessions (<c>CreateSession</c> with the thread count), one <see cref="LlamaBatch.Forward"/> of N items per step
/// (<see cref="BatchOptions"/> with the same threads, MaxTokens = N). llama.cpp: <see cref="LlamaCppBatchedDecoder"/>
/// (BatchedExecutor, N conversations, n_seq_max = N, n_ctx = N × (P + N − 1 + S), n_batch = n_ubatch ≥ N), one llama_decode
/// of N tokens per step. The sequential baseline: the same N prefilled sessions of ours, each decoding its S steps alone
/// (<see cref="ILlamaSession.Forward(int)"/>), one session after another — what N requests get without batching.
/// </summary>
internal sealed class BatchBench(Options options)
{
    private readonly List<BatchRow> _rows = [];

    private int PromptTokens => options.PromptGiven ? options.Prompt : 32;

    public int Run()
    {
        var total = Stopwatch.StartNew();
        string loadStart = Bench.LoadAverage();
        Log($"LlamaBench --batch {string.Join(',', options.Batch)}: {Environment.ProcessorCount} cores, {Bench.Cpu()}, .NET {Environment.Version}, "
            + $"Vector256 {(Vector256.IsHardwareAccelerated ? "accelerated" : "NOT accelerated")}; load average {loadStart}; "
            + $"prompt {PromptTokens}+i tokens, {options.Generate} steps");

        string? llamaProblem = options.NoLlama ? "skipped (--no-llama)" : null;
        if (!options.NoLlama)
        {
            try
            {
                LlamaCppOracle.EnsureNativeLibrary();
            }
            catch (LlamaCppUnavailableException e)
            {
                llamaProblem = "llama.cpp unavailable";
                Log($"warning: {e.Message}");
            }
        }

        IEnumerable<BenchModel> models = options.Models.Length == 0
            ? BenchModel.All
            : BenchModel.All.Where(m => options.Models.Contains(m.Name, StringComparer.OrdinalIgnoreCase));
        foreach (BenchModel model in models)
        {
            foreach (WeightFormat format in options.Formats.Where(model.Has))
                RunModel(model, format, llamaProblem);
        }

        string loadEnd = Bench.LoadAverage();
        Console.WriteLine(Table(loadStart, loadEnd, total.Elapsed));
        if (options.Json is not null)
            WriteJson(options.Json, loadStart, loadEnd, total.Elapsed);
        Log($"done in {total.Elapsed.TotalSeconds:F0} s");
        return 0;
    }

    private void RunModel(BenchModel model, WeightFormat format, string? llamaProblem)
    {
        string formatName = BenchModel.FormatName(format);
        string label = $"{model.Name} {formatName}";
        string path;
        try
        {
            path = model.GgufPath(format, options.Cache, Log);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            NotAvailable(model, formatName, $"no GGUF file: {e.Message}");
            return;
        }

        LoadedModel? ours = null;
        string? oursProblem = null;
        try
        {
            ours = model.Load(format, path, options.Loading);
        }
        catch (Exception e)
        {
            oursProblem = $"compiled model cannot load {Path.GetFileName(path)}: {e.GetType().Name}: {Bench.FirstLine(e.Message)}";
            Log($"{label}: {oursProblem}");
        }

        LlamaCppBatchedDecoder? llama = null;
        if (llamaProblem is null)
        {
            try
            {
                llama = new LlamaCppBatchedDecoder(path);
            }
            catch (Exception e)
            {
                llamaProblem = $"llama.cpp cannot load {Path.GetFileName(path)}: {Bench.FirstLine(e.Message)}";
                Log($"{label}: {llamaProblem}");
            }
        }

        try
        {
            foreach (int threads in options.Threads)
            {
                int first = _rows.Count;
                foreach (int n in options.Batch)
                    Measure(model, formatName, threads, n, ours, llama, oursProblem, llamaProblem);
                // Scaling: each row against the N = 1 row of the same model, format and threads.
                BatchRow? single = _rows.Skip(first).FirstOrDefault(r => r.Sequences == 1);
                for (int i = first; i < _rows.Count; i++)
                {
                    _rows[i] = _rows[i] with
                    {
                        OursScaling = BatchRow.Divide(_rows[i].Ours, single?.Ours),
                        LlamaScaling = BatchRow.Divide(_rows[i].LlamaCpp, single?.LlamaCpp),
                    };
                }
            }
        }
        finally
        {
            llama?.Dispose();
            ours?.Model.Dispose();
        }
    }

    private void Measure(BenchModel model, string formatName, int threads, int n, LoadedModel? ours, LlamaCppBatchedDecoder? llama,
        string? oursProblem, string? llamaProblem)
    {
        int steps = options.Generate;
        int[][] prompts = Prompts(model.Shape.VocabSize, n);
        int positions = prompts[^1].Length + steps; // the longest prompt and the steps
        if (positions > model.Shape.MaxContext)
        {
            NotAvailable(model, formatName, $"prompt {PromptTokens}+{n - 1} and {steps} steps exceed the context of {model.Shape.MaxContext}", threads, n);
            return;
        }

        string? oursError = oursProblem, llamaError = llamaProblem;
        var sessions = new List<ILlamaSession>();
        LlamaBatch? batch = null;
        try
        {
            if (ours is not null)
            {
                try
                {
                    for (int i = 0; i < n; i++)
                        sessions.Add(ours.CreateSession(new SessionOptions { Threads = threads }));
                    batch = ((ILlamaModel)ours.Model).CreateBatch(new BatchOptions { Threads = threads, MaxTokens = n });
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or OutOfMemoryException)
                {
                    oursError = $"{e.GetType().Name}: {Bench.FirstLine(e.Message)}";
                }
            }
            if (llama is not null)
            {
                Bench.Guard(() =>
                {
                    llama.CreateContext(n, positions, threads);
                    return 0;
                }, ref llamaError);
            }

            Func<int, double>? oursRun = batch is null || oursError is not null ? null : s => TimeOursBatched(batch, sessions, prompts, s);
            Func<int, double>? sequentialRun = oursRun is null || !options.Sequential ? null : s => TimeOursSequential(sessions, prompts, s);
            Func<int, double>? llamaRun = llama is null || llamaError is not null ? null : s => TimeLlama(llama, prompts, s);
            string? sequentialError = options.Sequential ? oursError : null;

            // Warm-up on a few steps (every kernel compiled at this N, the weights paged in), which also estimates how many
            // measured runs fit in the budget.
            int warmSteps = Math.Min(steps, 4);
            double warm = 0;
            if (oursRun is not null)
                warm += Bench.Guard(() => oursRun(warmSteps), ref oursError);
            if (sequentialRun is not null)
                warm += Bench.Guard(() => sequentialRun(warmSteps), ref sequentialError);
            if (llamaRun is not null)
                warm += Bench.Guard(() => llamaRun(warmSteps), ref llamaError);
            double perRun = warm * steps / warmSteps;
            int runs = Math.Clamp(perRun > 0 ? (int)(options.Budget / perRun) : options.Runs, 1, options.Runs);

            var oursTimes = new List<double>();
            var sequentialTimes = new List<double>();
            var llamaTimes = new List<double>();
            for (int r = 0; r < runs; r++)
            {
                // Interleaved, so that a disturbance of the machine hits the engines alike.
                if (oursRun is not null && oursError is null)
                    oursTimes.Add(Bench.Guard(() => oursRun(steps), ref oursError));
                if (sequentialRun is not null && sequentialError is null)
                    sequentialTimes.Add(Bench.Guard(() => sequentialRun(steps), ref sequentialError));
                if (llamaRun is not null && llamaError is null)
                    llamaTimes.Add(Bench.Guard(() => llamaRun(steps), ref llamaError));
            }

            double tokens = (double)n * steps;
            double? oursTps = oursError is null && oursTimes.Count > 0 ? tokens / Bench.Median(oursTimes) : null;
            double? sequentialTps = sequentialError is null && sequentialTimes.Count > 0 ? tokens / Bench.Median(sequentialTimes) : null;
            double? llamaTps = llamaError is null && llamaTimes.Count > 0 ? tokens / Bench.Median(llamaTimes) : null;
            string? note = string.Join("; ", new[]
            {
                oursError is null ? null : "ours: " + oursError,
                sequentialError is null || sequentialError == oursError ? null : "ours sequential: " + sequentialError,
                llamaError is null ? null : "llama.cpp: " + llamaError,
            }.Where(s => s is not null));
            var row = new BatchRow(model.Name, formatName, threads, n, steps, oursTps, llamaTps, sequentialTps, runs, note.Length == 0 ? null : note);
            _rows.Add(row);
            Log($"{row.Model,-15} {row.Format,-6} t={threads} N={n,-3} ours {Bench.Fmt(oursTps),8} t/s  llama.cpp {Bench.Fmt(llamaTps),8} t/s  "
                + $"ratio {Bench.Fmt(row.Ratio, "F2"),5}  ours sequential {Bench.Fmt(sequentialTps),8} t/s  runs {runs}{(row.Note is null ? "" : "  (" + row.Note + ")")}");
        }
        finally
        {
            batch?.Dispose();
            foreach (ILlamaSession session in sessions)
                session.Dispose();
        }
    }

    /// <summary>Sequence i's prompt: BOS and P + i − 1 random ids (a seed per sequence).</summary>
    private int[][] Prompts(int vocab, int n)
    {
        var prompts = new int[n][];
        for (int i = 0; i < n; i++)
        {
            var random = new Random(1000 + i);
            prompts[i] = new int[PromptTokens + i];
            prompts[i][0] = 1; // BOS
            for (int j = 1; j < prompts[i].Length; j++)
                prompts[i][j] = random.Next(3, vocab);
        }
        return prompts;
    }

    /// <summary>Greedy choice: the first index of the largest logit (vectorized; the same for both engines).</summary>
    private static int ArgMax(ReadOnlySpan<float> logits) => TensorPrimitives.IndexOfMax(logits);

    /// <summary>Resets and prefills ours (untimed); returns each session's first token.</summary>
    private static int[] PrefillOurs(List<ILlamaSession> sessions, int[][] prompts)
    {
        var next = new int[sessions.Count];
        for (int i = 0; i < sessions.Count; i++)
        {
            sessions[i].Reset();
            next[i] = ArgMax(sessions[i].Forward(prompts[i]));
        }
        return next;
    }

    private static double TimeOursBatched(LlamaBatch batch, List<ILlamaSession> sessions, int[][] prompts, int steps)
    {
        int[] next = PrefillOurs(sessions, prompts);
        int n = sessions.Count;
        var tokens = new int[n][];
        var items = new BatchItem[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = new int[1];
            items[i] = new BatchItem(sessions[i], tokens[i]);
        }
        Thread.Sleep(Bench.SettleMilliseconds);
        long start = Stopwatch.GetTimestamp();
        for (int step = 0; step < steps; step++)
        {
            for (int i = 0; i < n; i++)
                tokens[i][0] = next[i];
            batch.Forward(items);
            for (int i = 0; i < n; i++)
                next[i] = ArgMax(sessions[i].Logits);
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double TimeOursSequential(List<ILlamaSession> sessions, int[][] prompts, int steps)
    {
        int[] next = PrefillOurs(sessions, prompts);
        Thread.Sleep(Bench.SettleMilliseconds);
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < sessions.Count; i++)
        {
            int token = next[i];
            for (int step = 0; step < steps; step++)
                token = ArgMax(sessions[i].Forward(token));
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double TimeLlama(LlamaCppBatchedDecoder llama, int[][] prompts, int steps)
    {
        llama.Start(prompts);
        int n = prompts.Length;
        var next = new int[n];
        for (int i = 0; i < n; i++)
            next[i] = ArgMax(llama.Logits(i));
        Thread.Sleep(Bench.SettleMilliseconds);
        long start = Stopwatch.GetTimestamp();
        for (int step = 0; step < steps; step++)
        {
            llama.Step(next);
            for (int i = 0; i < n; i++)
                next[i] = ArgMax(llama.Logits(i));
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private void NotAvailable(BenchModel model, string format, string reason, int? threads = null, int? n = null)
    {
        foreach (int t in threads is int one ? [one] : options.Threads)
        {
            foreach (int sequences in n is int m ? [m] : options.Batch)
                _rows.Add(new BatchRow(model.Name, format, t, sequences, options.Generate, null, null, null, 0, reason));
        }
        Log($"{model.Name} {format}: n/a ({reason})");
    }

    private string Table(string loadStart, string loadEnd, TimeSpan elapsed)
    {
        var text = new StringBuilder();
        text.AppendLine($"LlamaBench --batch {DateTime.Now:yyyy-MM-dd HH:mm} — {Bench.Cpu()}, {Environment.ProcessorCount} cores, .NET {Environment.Version}, "
            + $"llama.cpp: LLamaSharp 0.30.0 CPU backend ({Bench.LibraryLevel()}) BatchedExecutor, flash attention off, F32 KV cache; "
            + $"ours: LlamaBatch.Forward, weights loaded with WeightLoading.{options.Loading}.");
        text.AppendLine($"Each of N sequences prefilled (untimed) with its own prompt of {PromptTokens}+i tokens, then {options.Generate} decode steps of one token "
            + "per sequence (its greedy argmax) in one forward pass; t/s = N × steps ÷ time of the steps (aggregate). "
            + $"Load average before/after: {loadStart} / {loadEnd}. Took {elapsed.TotalSeconds:F0} s.");
        text.AppendLine("Median of the runs after a warm-up; ratio = ours ÷ llama.cpp; scaling = t/s at N ÷ t/s at N = 1 of the same engine; "
            + "ours sequential = the same N sessions decoding one after another (no batching); batching gain = ours ÷ ours sequential.");
        text.AppendLine();
        text.AppendLine("| model | format | threads | N | ours t/s | llama.cpp t/s | ratio | ours scaling | llama.cpp scaling | ours sequential t/s | batching gain | runs | note |");
        text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (BatchRow r in _rows)
        {
            text.AppendLine($"| {r.Model} | {r.Format} | {r.Threads} | {r.Sequences} | {Bench.Fmt(r.Ours)} | {Bench.Fmt(r.LlamaCpp)} | {Bench.Fmt(r.Ratio, "F2")} "
                + $"| {Times(r.OursScaling)} | {Times(r.LlamaScaling)} | {(options.Sequential ? Bench.Fmt(r.OursSequential) : "–")} | {Times(r.BatchingGain)} | {r.Runs} "
                + $"| {r.Note?.Replace("|", "/", StringComparison.Ordinal) ?? ""} |");
        }
        return text.ToString();
    }

    private static string Times(double? value) => value is double v ? v.ToString("F2", CultureInfo.InvariantCulture) + "×" : "–";

    private void WriteJson(string path, string loadStart, string loadEnd, TimeSpan elapsed)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("mode", "batch");
        json.WriteString("date", DateTimeOffset.Now);
        json.WriteString("cpu", Bench.Cpu());
        json.WriteNumber("cores", Environment.ProcessorCount);
        json.WriteString("dotnet", Environment.Version.ToString());
        json.WriteString("llamaCpp", $"LLamaSharp 0.30.0 CPU backend ({Bench.LibraryLevel()}) BatchedExecutor, flash attention off, F32 KV cache");
        json.WriteString("loading", options.Loading.ToString());
        json.WriteNumber("promptTokens", PromptTokens);
        json.WriteNumber("steps", options.Generate);
        json.WriteString("loadAverageBefore", loadStart);
        json.WriteString("loadAverageAfter", loadEnd);
        json.WriteNumber("seconds", Math.Round(elapsed.TotalSeconds, 1));
        json.WriteStartArray("rows");
        foreach (BatchRow r in _rows)
        {
            json.WriteStartObject();
            json.WriteString("model", r.Model);
            json.WriteString("format", r.Format);
            json.WriteNumber("threads", r.Threads);
            json.WriteNumber("sequences", r.Sequences);
            json.WriteNumber("steps", r.Steps);
            Bench.Number(json, "oursTokensPerSecond", r.Ours);
            Bench.Number(json, "llamaCppTokensPerSecond", r.LlamaCpp);
            Bench.Number(json, "ratio", r.Ratio);
            Bench.Number(json, "oursScaling", r.OursScaling);
            Bench.Number(json, "llamaCppScaling", r.LlamaScaling);
            Bench.Number(json, "oursSequentialTokensPerSecond", r.OursSequential);
            Bench.Number(json, "batchingGain", r.BatchingGain);
            json.WriteNumber("runs", r.Runs);
            if (r.Note is null)
                json.WriteNull("note");
            else
                json.WriteString("note", r.Note);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
        Log($"wrote {path}");
    }

    private static void Log(string message) => Bench.Log(message);
}
