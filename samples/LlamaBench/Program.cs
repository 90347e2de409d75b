// LlamaBench: prompt processing (pp) and text generation (tg) speed of the compiled models and of llama.cpp
// (LLamaSharp 0.30.0, CPU backend, flash attention off, F32 KV cache unless --kv says otherwise) on the same GGUF files, same threads,
// in one process, as llama-bench reports them.
//
//   dotnet run -c Release --project samples/LlamaBench -- [--quick] [--models stories15M,stories110M]
//       [--threads 1,2] [--formats f32,q8_0] [--pp 128] [--tg 32] [--runs 3] [--cache DIR] [--json FILE]
//       [--budget SECONDS] [--loading copy|map] [--no-llama] [--first-call] [--depth 0,512,2048] [--kv f32,f16,q8_0]
//   ... -- --batch 1,4,8,16 [--no-sequential] [--models ...] [--formats q8_0] [--threads ...] [--pp 32] [--tg 32]
//       aggregate decode t/s of N sequences decoding together (BatchBench.cs)
//
// Runs with .NET's default settings (tiered compilation on), as a user's app does. --first-call adds a row per
// pp test: the first Forward of a fresh process (load, then one prompt), as a user's first request meets it.
//
// The Markdown table goes to stdout, progress to stderr.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using System.Threading;
using System.Text.Json;
using Llama.Compiled;
using LlamaBench;
using Llama.Compiled.LlamaCpp;
using LLama.Native;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

if (args.Length > 0 && args[0] == FirstCall.ChildFlag)
    return FirstCall.RunChild(args);
if (args.Length > 1 && args[0] == TokenizerBench.LoadChildFlag)
    return TokenizerBench.RunLoadChild(args[1]);

Options options;
try
{
    options = Options.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
if (options.Help)
{
    Console.WriteLine(Options.Usage);
    return 0;
}
if (args.Contains("--tokenizers"))
    return TokenizerBench.Run(options.Runs);

return new Bench(options).Run();

namespace LlamaBench
{
    /// <summary>Command-line options.</summary>
    internal sealed record Options
    {
        public const string Usage = """
            LlamaBench: compiled models vs llama.cpp, prompt processing (pp) and text generation (tg).
              --tokenizers       instead: byte-level BPE encoding throughput and tokenizer.json load time, vs llama.cpp's tokenizer
              --quick            < 2 min: stories260K, stories15M, stories110M; 2 runs, pp 64, tg 16
              --models LIST      stories260K,stories15M,stories110M,tinyllama-1.1b,llama-3.2-1b (default: all)
              --threads LIST     thread counts (default: 1,2)
              --formats LIST     f32,q8_0,q4_k_m,q4_0 (default: all; a model runs the ones it is compiled for). q4_k_m and q4_0
                                 are the files llama.cpp's quantizer (llama-quantize) makes of the F32 file, mixes included
              --pp P             prompt tokens evaluated in one batch (default 128; clamped to the context)
              --tg N             tokens generated one at a time (default 32)
              --depth LIST       KV cache depths: each pp and tg test runs after d tokens are in the cache (prefilled once,
                                 not timed; restored before each run), as llama-bench's -d; rows 'tg32 @ d2048' (default: 0)
              --kv LIST          KV cache formats f32,f16,q8_0 (default: f32): ours SessionOptions.KvCache, llama.cpp the same
                                 type for K and V (as its -ctk/-ctv; with q8_0 flash attention on, which its quantized V cache
                                 requires); the table gains a kv column when a format other than f32 is listed
              --runs R           measured runs after a warm-up; the median is reported (default 3)
              --budget SECONDS   fewer runs when one run takes longer than SECONDS / R (default 20)
              --cache DIR        where random-weight GGUF files are written once and reused (default: <temp>/llama-compiled-bench)
              --json FILE        also write the results as JSON
              --loading MODE     map (default, the library's default: WeightLoading.Map, memory-mapped, converted tensors
                                 from the weight cache file); copy: weights read into huge-page memory (WeightLoading.Copy)
              --no-llama         skip llama.cpp
              --first-call       also time the first pp of a fresh process (after its load, warm file cache):
                                 what an app's first prompt costs, JIT compilation included; median of R processes;
                                 with the resident memory (VmRSS, RssFile, RssAnon) of the process at its first logits
              --batch LIST       instead of pp/tg: aggregate decode throughput of N sequences decoding together, for each N
                                 in LIST (e.g. 1,4,8,16). Ours: N sessions, one LlamaBatch.Forward per step; llama.cpp:
                                 BatchedExecutor with N conversations, one llama_decode per step. Each sequence is first
                                 prefilled (untimed) with its own prompt of pp+i tokens (pp defaults to 32 here), then tg
                                 steps (default 32) each evaluate one token per sequence: its greedy argmax
              --no-sequential    with --batch: skip the baseline of ours without batching (the N sessions decoding
                                 one after another, tg steps each)
            """;

        public bool Help { get; init; }
        public bool Quick { get; init; }
        public string[] Models { get; init; } = [];
        public int[] Threads { get; init; } = [1, 2];
        public WeightFormat[] Formats { get; init; } = [WeightFormat.F32, WeightFormat.Q8_0, WeightFormat.Q4_K_M, WeightFormat.MostlyQ4_0];
        public int Prompt { get; init; } = 128;
        public int Generate { get; init; } = 32;
        public int[] Depths { get; init; } = [0];
        public KvCacheFormat[] KvCaches { get; init; } = [KvCacheFormat.F32];
        public int Runs { get; init; } = 3;
        public double Budget { get; init; } = 20;
        public string Cache { get; init; } = Path.Combine(Path.GetTempPath(), "llama-compiled-bench");
        public string? Json { get; init; }
        public bool NoLlama { get; init; }
        public WeightLoading Loading { get; init; } = WeightLoading.Map;
        public bool FirstCall { get; init; }
        public int[] Batch { get; init; } = [];
        public bool Sequential { get; init; } = true;
        public bool PromptGiven { get; init; }

        /// <summary>True when --kv lists a format other than F32: the table gets a kv column (without it, the table as before --kv).</summary>
        public bool KvColumn => KvCaches is not [KvCacheFormat.F32];

        public static Options Parse(string[] args)
        {
            var o = new Options();
            bool quick = args.Contains("--quick");
            if (quick)
                o = o with { Quick = true, Models = ["stories260K", "stories15M", "stories110M"], Runs = 2, Prompt = 64, Generate = 16, Budget = 4 };
            for (int i = 0; i < args.Length; i++)
            {
                string arg = args[i];
                string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value");
                int Positive(string text) => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0
                    ? v : throw new ArgumentException($"{arg}: '{text}' is not a positive integer");
                string[] List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                switch (arg)
                {
                    case "--quick" or "--tokenizers": break;
                    case "-h" or "--help": o = o with { Help = true }; break;
                    case "--models":
                        string[] models = List(Value());
                        foreach (string m in models)
                        {
                            if (!BenchModel.All.Any(b => b.Name.Equals(m, StringComparison.OrdinalIgnoreCase)))
                                throw new ArgumentException($"--models: unknown model '{m}'; known: {string.Join(", ", BenchModel.All.Select(b => b.Name))}");
                        }
                        o = o with { Models = models };
                        break;
                    case "--threads": o = o with { Threads = List(Value()).Select(Positive).Distinct().ToArray() }; break;
                    case "--formats":
                        o = o with
                        {
                            Formats = List(Value()).Select(f => f.ToLowerInvariant() switch
                            {
                                "f32" => WeightFormat.F32,
                                "q8_0" or "q8" => WeightFormat.Q8_0,
                                "q4_k_m" => WeightFormat.Q4_K_M,
                                "q4_0" => WeightFormat.MostlyQ4_0,
                                _ => throw new ArgumentException($"--formats: unknown format '{f}'; use f32, q8_0, q4_k_m, q4_0"),
                            }).Distinct().ToArray(),
                        };
                        break;
                    case "--pp": o = o with { Prompt = Positive(Value()), PromptGiven = true }; break;
                    case "--batch": o = o with { Batch = List(Value()).Select(Positive).Distinct().Order().ToArray() }; break;
                    case "--no-sequential": o = o with { Sequential = false }; break;
                    case "--tg": o = o with { Generate = Positive(Value()) }; break;
                    case "--depth":
                        o = o with
                        {
                            Depths = List(Value()).Select(d => int.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out int v)
                                ? v : throw new ArgumentException($"--depth: '{d}' is not a non-negative integer")).Distinct().Order().ToArray(),
                        };
                        break;
                    case "--kv":
                        o = o with
                        {
                            KvCaches = List(Value()).Select(f => f.ToLowerInvariant() switch
                            {
                                "f32" => KvCacheFormat.F32,
                                "f16" => KvCacheFormat.F16,
                                "q8_0" or "q8" => KvCacheFormat.Q8_0,
                                _ => throw new ArgumentException($"--kv: unknown KV cache format '{f}'; use f32, f16, q8_0"),
                            }).Distinct().ToArray(),
                        };
                        break;
                    case "--runs": o = o with { Runs = Positive(Value()) }; break;
                    case "--budget": o = o with { Budget = Positive(Value()) }; break;
                    case "--cache": o = o with { Cache = Value() }; break;
                    case "--json": o = o with { Json = Value() }; break;
                    case "--no-llama": o = o with { NoLlama = true }; break;
                    case "--first-call": o = o with { FirstCall = true }; break;
                    case "--loading":
                        o = o with
                        {
                            Loading = Value().ToLowerInvariant() switch
                            {
                                "copy" => WeightLoading.Copy,
                                "map" => WeightLoading.Map,
                                string m => throw new ArgumentException($"--loading: unknown mode '{m}'; use copy, map"),
                            },
                        };
                        break;
                    default: throw new ArgumentException($"unknown option {arg} (see --help)");
                }
            }
            if (o.Threads.Length == 0 || o.Formats.Length == 0)
                throw new ArgumentException("--threads and --formats need at least one value");
            if (args.Contains("--batch") && o.Batch.Length == 0)
                throw new ArgumentException("--batch needs at least one sequence count");
            if (o.Batch.Length > 0 && o.FirstCall)
                throw new ArgumentException("--first-call does not apply to --batch");
            if (o.Depths.Length == 0)
                throw new ArgumentException("--depth needs at least one depth");
            if (o.Batch.Length > 0 && o.Depths is not [0])
                throw new ArgumentException("--depth does not apply to --batch");
            if (o.KvCaches.Length == 0)
                throw new ArgumentException("--kv needs at least one format");
            if (o.Batch.Length > 0 && o.KvCaches is not [KvCacheFormat.F32])
                throw new ArgumentException("--kv does not apply to --batch");
            return o;
        }
    }

    /// <summary>One table row: one model, format, KV cache format, thread count and test (at a KV cache depth), both engines.</summary>
    internal sealed record Row(string Model, string Format, int Threads, string Test, int Tokens,
        double? Ours, double? LlamaCpp, int Runs, double? OursRoofline, double? LlamaRoofline, string? Note)
    {
        public double? Ratio => Ours is double o && LlamaCpp is double l && l > 0 ? o / l : null;

        /// <summary>Tokens in the KV cache before the test's first token.</summary>
        public int Depth { get; init; }

        /// <summary>How both engines' KV caches store keys and values (--kv).</summary>
        public KvCacheFormat KvCache { get; init; }

        /// <summary>A --first-call row: fresh processes, the first pp after the load.</summary>
        public bool FirstCall { get; init; }

        /// <summary>pp rows: the share of the measured compute peak (F32 FMA or int8) that our t/s uses.</summary>
        public double? OursPeak { get; init; }

        /// <summary>pp rows: the share of the measured compute peak (F32 FMA or int8) that llama.cpp's t/s uses.</summary>
        public double? LlamaPeak { get; init; }

        /// <summary>--first-call rows: the GGUF file's size in bytes.</summary>
        public long? FileBytes { get; init; }

        /// <summary>--first-call rows: our fresh processes' resident memory at their first logits (median).</summary>
        public ResidentMemory? OursMemory { get; init; }

        /// <summary>--first-call rows: llama.cpp's fresh processes' resident memory at their first logits (median).</summary>
        public ResidentMemory? LlamaMemory { get; init; }

        /// <summary>The test's name as llama-bench prints it: "pp128", "tg32 @ d2048".</summary>
        public static string TestName(string test, int tokens, int depth) => depth == 0 ? $"{test}{tokens}" : $"{test}{tokens} @ d{depth}";
    }

    internal sealed class Bench(Options options)
    {
        private readonly List<Row> _rows = [];
        private readonly Dictionary<int, double> _bandwidth = [];
        private readonly Dictionary<int, double> _fmaPeak = [];
        private readonly Dictionary<int, double> _int8Peak = [];

        public int Run()
        {
            if (options.Batch.Length > 0)
                return new BatchBench(options).Run();
            var total = Stopwatch.StartNew();
            string loadStart = LoadAverage();
            Directory.CreateDirectory(options.Cache);
            Log($"LlamaBench: {Environment.ProcessorCount} cores, {Cpu()}, .NET {Environment.Version}, "
                + $"Vector256 {(Vector256.IsHardwareAccelerated ? "accelerated" : "NOT accelerated")}; load average {loadStart}");

            MeasureLimits("start");

            string? llamaProblem = null;
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
                    RunModel(model, format, options.NoLlama ? "skipped (--no-llama)" : llamaProblem);
            }

            // Measured again at the end: on a shared machine the better of the two is the closer to the hardware's.
            MeasureLimits("end");
            ComputeShares(models);
            string table = Table(loadStart, LoadAverage(), total.Elapsed);
            Console.WriteLine(table);
            if (options.Json is not null)
                WriteJson(options.Json, loadStart, LoadAverage(), total.Elapsed);
            Log($"done in {total.Elapsed.TotalSeconds:F0} s");
            return 0;
        }

        /// <summary>The limits the rows are compared with: memory read bandwidth (tg) and the compute peaks (pp).</summary>
        private void MeasureLimits(string when)
        {
            foreach (int threads in options.Threads)
            {
                double gbps = Bandwidth.MeasureGBps(threads);
                double fma = ComputePeak.FmaPerSecond(threads), int8 = ComputePeak.Int8PerSecond(threads);
                Log($"at the {when}, {threads} thread(s): memory read bandwidth {gbps:F1} GB/s; F32 FMA ({ComputePeak.FmaBits}-bit) {fma / 1e9:F1} G multiply-adds/s; "
                    + $"int8 ({ComputePeak.Int8Path}) {int8 / 1e9:F1} G multiply-adds/s");
                _bandwidth[threads] = Math.Max(gbps, _bandwidth.GetValueOrDefault(threads));
                _fmaPeak[threads] = Math.Max(fma, _fmaPeak.GetValueOrDefault(threads));
                _int8Peak[threads] = Math.Max(int8, _int8Peak.GetValueOrDefault(threads));
            }
        }

        /// <summary>
        /// Each tg row's share of the roofline (bandwidth ÷ bytes read per token) and each pp row's share of the compute peak
        /// (multiply-adds per token × t/s ÷ the peak of the row's thread count: FMA for F32, int8 for the quantized formats).
        /// </summary>
        private void ComputeShares(IEnumerable<BenchModel> models)
        {
            for (int i = 0; i < _rows.Count; i++)
            {
                Row r = _rows[i];
                BenchModel? model = models.FirstOrDefault(m => m.Name == r.Model);
                if (model is null || r.FirstCall)
                    continue;
                WeightFormat format = Enum.Parse<WeightFormat>(r.Format == "Q4_0" ? nameof(WeightFormat.MostlyQ4_0) : r.Format);
                if (r.Test.StartsWith("tg", StringComparison.Ordinal))
                {
                    double position = r.Depth + (r.Tokens - 1) / 2.0;
                    double bw = _bandwidth[r.Threads] * 1e9;
                    _rows[i] = r with
                    {
                        OursRoofline = r.Ours / (bw / model.BytesPerToken(format, r.KvCache, llamaCpp: false, position)),
                        LlamaRoofline = r.LlamaCpp / (bw / model.BytesPerToken(format, r.KvCache, llamaCpp: true, position)),
                    };
                }
                else if (r.Tokens > 0)
                {
                    double peak = (format == WeightFormat.F32 ? _fmaPeak : _int8Peak)[r.Threads];
                    double multiplyAdds = model.PromptMultiplyAddsPerToken(r.Depth, r.Tokens);
                    _rows[i] = r with
                    {
                        OursPeak = peak > 0 ? r.Ours * multiplyAdds / peak : null,
                        LlamaPeak = peak > 0 ? r.LlamaCpp * multiplyAdds / peak : null,
                    };
                }
            }
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

            int context = model.Shape.MaxContext;
            int prompt = Math.Min(options.Prompt, context);
            int generate = Math.Min(options.Generate, context);
            // One token sequence for every test: a run at depth d evaluates tokens[d..d+n] after tokens[0..d].
            int[] tokens = PromptTokens(model.Shape.VocabSize, Math.Min(context, options.Depths[^1] + Math.Max(prompt, generate)));

            LoadedModel? ours = null;
            string? oursProblem = null;
            try
            {
                ours = model.Load(format, path, options.Loading);
            }
            catch (Exception e)
            {
                oursProblem = $"compiled model cannot load {Path.GetFileName(path)}: {e.GetType().Name}: {FirstLine(e.Message)}";
                Log($"{label}: {oursProblem}");
            }

            try
            {
                foreach (KvCacheFormat kvCache in options.KvCaches)
                    RunKvCache(model, formatName, path, kvCache, tokens, prompt, generate, ours, oursProblem, llamaProblem);
            }
            finally
            {
                ours?.Model.Dispose();
            }
        }

        /// <summary>
        /// The tests of one model and format with one KV cache format: ours in sessions with that <see cref="SessionOptions.KvCache"/>,
        /// llama.cpp in a context of its own with the same type for K and V (one context at a time: each holds its copy of the weights).
        /// </summary>
        private void RunKvCache(BenchModel model, string formatName, string path, KvCacheFormat kvCache, int[] tokens, int prompt, int generate,
            LoadedModel? ours, string? oursProblem, string? llamaProblem)
        {
            string label = $"{model.Name} {formatName} kv {kvCache}";
            int context = model.Shape.MaxContext;
            var oursDepths = new OursDepths(tokens); // a saved state restores only into a session with the same KV cache format
            // A Q8_0 cache for heads that its 32-value blocks do not tile is refused by LlamaCppOracle (llama.cpp would fail
            // to create the context, and LLamaSharp crash on it): the note says so.
            LlamaCppOracle? llama = null;
            if (llamaProblem is null)
            {
                try
                {
                    llama = new LlamaCppOracle(path, threads: options.Threads[0], contextSize: context, batchSize: Math.Max(prompt, 32), LlamaCppType(kvCache));
                }
                catch (Exception e)
                {
                    llamaProblem = e is ArgumentException ? FirstLine(e.Message) : $"llama.cpp cannot load {Path.GetFileName(path)}: {FirstLine(e.Message)}";
                    Log($"{label}: {llamaProblem}");
                }
            }

            try
            {
                foreach (int threads in options.Threads)
                {
                    ILlamaSession? session = null;
                    try
                    {
                        session = ours?.CreateSession(new SessionOptions { Threads = threads, KvCache = kvCache });
                        if (llama is not null)
                            llama.Threads = threads;
                        foreach (int depth in options.Depths)
                        {
                            foreach ((string test, int count) in new[] { ("pp", prompt), ("tg", generate) })
                            {
                                if (depth + count > context)
                                    NotAvailable(model, formatName, kvCache, threads, test, count, depth, $"depth {depth} + {count} tokens exceed the context of {context}");
                                else
                                    Measure(model, formatName, kvCache, threads, test, count, depth, tokens, session, oursDepths, llama, oursProblem, llamaProblem);
                            }
                        }
                        if (options.FirstCall)
                            MeasureFirstCall(model, formatName, kvCache, path, threads, prompt, oursProblem, llama is null ? llamaProblem ?? "skipped" : null);
                    }
                    finally
                    {
                        session?.Dispose();
                    }
                }
            }
            finally
            {
                llama?.Dispose();
            }
        }

        /// <summary>llama.cpp's cache type for <paramref name="kvCache"/>: the same element format (ggml's f32, f16, q8_0).</summary>
        internal static GGMLType LlamaCppType(KvCacheFormat kvCache) => kvCache switch
        {
            KvCacheFormat.F16 => GGMLType.GGML_TYPE_F16,
            KvCacheFormat.Q8_0 => GGMLType.GGML_TYPE_Q8_0,
            _ => GGMLType.GGML_TYPE_F32,
        };

        /// <summary>
        /// What a row's note says about llama.cpp's setup beyond the table's header: the oracle turns flash attention on for a
        /// quantized V cache (llama.cpp requires it), which changes its attention path.
        /// </summary>
        private static string? LlamaCppSetup(KvCacheFormat kvCache) =>
            kvCache == KvCacheFormat.Q8_0 ? "llama.cpp: flash attention on (its Q8_0 V cache requires it)" : null;

        /// <summary>Pause before a timed run, longer than either engine's workers spin after a job.</summary>
        internal const int SettleMilliseconds = 50;

        /// <summary>
        /// One test of both engines: <paramref name="count"/> tokens (one batch for pp, one at a time for tg) after
        /// <paramref name="depth"/> tokens in the KV cache, each run brought back to that depth first (not timed).
        /// </summary>
        private void Measure(BenchModel model, string formatName, KvCacheFormat kvCache, int threads, string test, int count, int depth, int[] tokens,
            ILlamaSession? session, OursDepths oursDepths, LlamaCppOracle? llama, string? oursProblem, string? llamaProblem)
        {
            Func<int, double>? oursRun = session is null ? null : n =>
            {
                oursDepths.MoveTo(session, depth);
                return TimeOurs(session, tokens.AsSpan(depth, n), batched: test == "pp");
            };
            Func<int, double>? llamaRun = llama is null ? null : n =>
            {
                MoveTo(llama, tokens, depth);
                return TimeLlama(llama, tokens.AsSpan(depth, n), batched: test == "pp");
            };

            // Warm-up on a shorter run of each engine (every kernel compiled, the weights paged in), which also
            // estimates how many measured runs fit in the budget.
            int warmCount = Math.Min(count, test == "pp" ? 16 : 8);
            double warmOurs = 0, warmLlama = 0;
            string? oursError = oursProblem, llamaError = llamaProblem;
            if (oursRun is not null)
                warmOurs = Guard(() => oursRun(warmCount), ref oursError);
            if (llamaRun is not null)
                warmLlama = Guard(() => llamaRun(warmCount), ref llamaError);
            double perRun = ((oursError is null ? warmOurs : 0) + (llamaError is null ? warmLlama : 0)) * count / warmCount;
            int runs = Math.Clamp(perRun > 0 ? (int)(options.Budget / perRun) : options.Runs, 1, options.Runs);

            var oursTimes = new List<double>();
            var llamaTimes = new List<double>();
            for (int r = 0; r < runs; r++)
            {
                // Interleaved, so that a disturbance of the machine hits both engines alike. Before each run the
                // other engine's worker threads get time to stop spinning: on 2 cores a spinning worker of one
                // engine takes a core from the other (llama.cpp's 2-thread rows otherwise steal ours, and back).
                if (oursError is null && oursRun is not null)
                {
                    Thread.Sleep(SettleMilliseconds);
                    oursTimes.Add(Guard(() => oursRun(count), ref oursError));
                }
                if (llamaError is null && llamaRun is not null)
                {
                    Thread.Sleep(SettleMilliseconds);
                    llamaTimes.Add(Guard(() => llamaRun(count), ref llamaError));
                }
            }

            double? oursTps = oursError is null && oursTimes.Count > 0 ? count / Median(oursTimes) : null;
            double? llamaTps = llamaError is null && llamaTimes.Count > 0 ? count / Median(llamaTimes) : null;
            string? note = Note(oursError is null ? null : "ours: " + oursError, llamaError is null ? null : "llama.cpp: " + llamaError,
                llamaRun is null ? null : LlamaCppSetup(kvCache));
            var row = new Row(model.Name, formatName, threads, Row.TestName(test, count, depth), count, oursTps, llamaTps, runs, null, null, note)
            {
                Depth = depth,
                KvCache = kvCache,
            };
            _rows.Add(row);
            Log($"{row.Model,-15} {row.Format,-5}{KvLabel(kvCache)} t={threads} {row.Test,-6} ours {Fmt(oursTps),9} t/s  llama.cpp {Fmt(llamaTps),9} t/s  ratio {Fmt(row.Ratio, "F2"),5}  runs {runs}{(note is null ? "" : "  (" + note + ")")}");
        }

        /// <summary>
        /// The first pp of fresh processes (one per run, interleaved between the engines), each after its own load of
        /// the file the parent has already read (a warm page cache): JIT compilation and first-touch costs included.
        /// </summary>
        private void MeasureFirstCall(BenchModel model, string formatName, KvCacheFormat kvCache, string path, int threads, int prompt, string? oursProblem, string? llamaProblem)
        {
            var oursTimes = new List<double>();
            var oursJit = new List<double>();
            var llamaTimes = new List<double>();
            var oursLoads = new List<double>();
            var llamaLoads = new List<double>();
            var oursMemory = new List<ResidentMemory>();
            var llamaMemory = new List<ResidentMemory>();
            string? oursError = oursProblem, llamaError = llamaProblem;
            for (int r = 0; r < options.Runs; r++)
            {
                if (oursError is null)
                {
                    try
                    {
                        FirstCallResult result = FirstCall.Spawn(model.Name, formatName, "ours", threads, prompt, path, options.Loading, kvCache);
                        oursTimes.Add(result.Seconds);
                        oursJit.Add(result.JitSeconds);
                        oursLoads.Add(result.LoadToLogitsSeconds);
                        if (result.Memory is not null)
                            oursMemory.Add(result.Memory);
                    }
                    catch (InvalidOperationException e)
                    {
                        oursError = FirstLine(e.Message);
                    }
                }
                if (llamaError is null)
                {
                    try
                    {
                        FirstCallResult result = FirstCall.Spawn(model.Name, formatName, "llama.cpp", threads, prompt, path, options.Loading, kvCache);
                        llamaTimes.Add(result.Seconds);
                        llamaLoads.Add(result.LoadToLogitsSeconds);
                        if (result.Memory is not null)
                            llamaMemory.Add(result.Memory);
                    }
                    catch (InvalidOperationException e)
                    {
                        llamaError = FirstLine(e.Message);
                    }
                }
            }
            double? oursTps = oursError is null && oursTimes.Count > 0 ? prompt / Median(oursTimes) : null;
            double? llamaTps = llamaError is null && llamaTimes.Count > 0 ? prompt / Median(llamaTimes) : null;
            long fileBytes = new FileInfo(path).Length;
            ResidentMemory? oursResident = ResidentMemory.Median(oursMemory), llamaResident = ResidentMemory.Median(llamaMemory);
            string? note = oursError is not null || llamaError is not null
                ? Note(oursError is null ? null : "ours: " + oursError, llamaError is null ? null : "llama.cpp: " + llamaError)
                : Note($"ours {1000 * Median(oursTimes):F0} ms, of which JIT compilation {1000 * Median(oursJit):F0} ms; load to these logits "
                    + $"ours {1000 * Median(oursLoads):F0} ms ({options.Loading}), llama.cpp {1000 * Median(llamaLoads):F0} ms; "
                    + $"RSS at these logits (file {fileBytes / 1e9:F2} GB): ours {oursResident?.Describe(fileBytes) ?? "n/a"}, "
                    + $"llama.cpp {llamaResident?.Describe(fileBytes) ?? "n/a"}", LlamaCppSetup(kvCache));
            var row = new Row(model.Name, formatName, threads, $"pp{prompt} first", prompt, oursTps, llamaTps, options.Runs, null, null, note)
            {
                KvCache = kvCache,
                FirstCall = true,
                FileBytes = fileBytes,
                OursMemory = oursResident,
                LlamaMemory = llamaResident,
            };
            _rows.Add(row);
            Log($"{row.Model,-15} {row.Format,-5}{KvLabel(kvCache)} t={threads} {row.Test,-10} ours {Fmt(oursTps),9} t/s  llama.cpp {Fmt(llamaTps),9} t/s  ratio {Fmt(row.Ratio, "F2"),5}  ({options.Runs} fresh processes each; {note})");
        }

        private void NotAvailable(BenchModel model, string format, string reason)
        {
            foreach (KvCacheFormat kvCache in options.KvCaches)
            {
                foreach (int threads in options.Threads)
                {
                    foreach (int depth in options.Depths)
                    {
                        foreach ((string test, int count) in new[] { ("pp", options.Prompt), ("tg", options.Generate) })
                        {
                            _rows.Add(new Row(model.Name, format, threads, Row.TestName(test, count, depth), 0, null, null, 0, null, null, reason)
                            {
                                Depth = depth,
                                KvCache = kvCache,
                            });
                        }
                    }
                }
            }
            Log($"{model.Name} {format}: n/a ({reason})");
        }

        private void NotAvailable(BenchModel model, string format, KvCacheFormat kvCache, int threads, string test, int count, int depth, string reason)
        {
            var row = new Row(model.Name, format, threads, Row.TestName(test, count, depth), 0, null, null, 0, null, null, reason) { Depth = depth, KvCache = kvCache };
            _rows.Add(row);
            Log($"{row.Model,-15} {row.Format,-5}{KvLabel(kvCache)} t={threads} {row.Test,-6} n/a ({reason})");
        }

        /// <summary>The parts of a row's note that apply, joined by "; "; null when none does.</summary>
        private static string? Note(params string?[] parts) =>
            parts.Any(p => p is not null) ? string.Join("; ", parts.Where(p => p is not null)) : null;

        /// <summary>The KV cache format in a progress line, when --kv lists more than the default.</summary>
        private string KvLabel(KvCacheFormat kvCache) => options.KvColumn ? $" kv {kvCache,-4}" : "";

        internal static double Guard(Func<double> run, ref string? error)
        {
            try
            {
                return run();
            }
            catch (Exception e)
            {
                error = $"{e.GetType().Name}: {FirstLine(e.Message)}";
                return 0;
            }
        }

        private static double TimeOurs(ILlamaSession session, ReadOnlySpan<int> tokens, bool batched)
        {
            long start = Stopwatch.GetTimestamp();
            if (batched)
            {
                session.Forward(tokens);
            }
            else
            {
                foreach (int token in tokens)
                    session.Forward(token);
            }
            return Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        /// <summary>
        /// Brings llama.cpp's KV cache to <paramref name="depth"/> tokens of <paramref name="tokens"/>. Every evaluation of the
        /// bench continues that one sequence (a run at depth d evaluates tokens[d..d+n]), so the cache always holds a prefix of
        /// it: a shallower depth is a rewind, a deeper one evaluates the missing tokens in batches.
        /// </summary>
        private static void MoveTo(LlamaCppOracle llama, int[] tokens, int depth)
        {
            if (depth == 0)
            {
                llama.Reset();
                return;
            }
            if (llama.Position >= depth)
            {
                llama.Rewind(depth);
                return;
            }
            while (llama.Position < depth)
                llama.Evaluate(tokens.AsSpan(llama.Position, Math.Min(llama.BatchSize, depth - llama.Position)));
        }

        private static double TimeLlama(LlamaCppOracle llama, ReadOnlySpan<int> tokens, bool batched)
        {
            long start = Stopwatch.GetTimestamp();
            if (batched)
            {
                llama.Evaluate(tokens);
                _ = llama.Logits();
            }
            else
            {
                foreach (int token in tokens)
                {
                    llama.Evaluate([token]);
                    _ = llama.Logits();
                }
            }
            return Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        private static int[] PromptTokens(int vocab, int count)
        {
            var random = new Random(1234);
            var tokens = new int[count];
            tokens[0] = 1; // BOS
            for (int i = 1; i < count; i++)
                tokens[i] = random.Next(3, vocab);
            return tokens;
        }

        private string Table(string loadStart, string loadEnd, TimeSpan elapsed)
        {
            var text = new StringBuilder();
            text.AppendLine($"LlamaBench {DateTime.Now:yyyy-MM-dd HH:mm} — {Cpu()}, {Environment.ProcessorCount} cores, .NET {Environment.Version}, "
                + $"llama.cpp: LLamaSharp 0.30.0 CPU backend ({LibraryLevel()}), {LlamaCppSettings()}; ours: weights loaded with WeightLoading.{options.Loading}.");
            text.AppendLine($"Memory read bandwidth (measured): {string.Join(", ", _bandwidth.Select(kv => $"{kv.Key} thread(s) {kv.Value:F1} GB/s"))}. "
                + $"Compute peaks (measured), multiply-adds/s: F32 FMA {ComputePeak.FmaBits}-bit {PerThreads(_fmaPeak)}; "
                + $"int8 {ComputePeak.Int8Path} {PerThreads(_int8Peak)}. "
                + $"Load average before/after: {loadStart} / {loadEnd}. Took {elapsed.TotalSeconds:F0} s.");
            text.AppendLine("Median of the runs after a warm-up; t/s = tokens per second; ratio = ours / llama.cpp; "
                + "roofline = bandwidth ÷ bytes read per generated token (weights in the engine's format + KV cache); "
                + "over 100 % means the weights were (partly) cache-resident or the bandwidth measurement was disturbed; "
                + "% peak = multiply-adds per prompt token (layers' matrices, causal attention, the classifier for the last token) "
                + "× t/s ÷ the compute peak of the row's threads (F32 FMA for F32, int8 for the quantized formats); "
                + "'@ dN': after N tokens in the KV cache.");
            text.AppendLine();
            string kvHeader = options.KvColumn ? " kv |" : "", kvRule = options.KvColumn ? "---|" : "";
            text.AppendLine($"| model | format |{kvHeader} threads | test | ours t/s | llama.cpp t/s | ratio | ours % roofline | llama.cpp % roofline | ours % peak | llama.cpp % peak | runs | note |");
            text.AppendLine($"|---|---|{kvRule}---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
            foreach (Row r in _rows)
            {
                string kv = options.KvColumn ? $" {r.KvCache} |" : "";
                text.AppendLine($"| {r.Model} | {r.Format} |{kv} {r.Threads} | {r.Test} | {Fmt(r.Ours)} | {Fmt(r.LlamaCpp)} | {Fmt(r.Ratio, "F2")} "
                    + $"| {Percent(r.OursRoofline)} | {Percent(r.LlamaRoofline)} | {Percent(r.OursPeak)} | {Percent(r.LlamaPeak)} "
                    + $"| {r.Runs} | {r.Note?.Replace("|", "/", StringComparison.Ordinal) ?? ""} |");
            }
            return text.ToString();
        }

        private void WriteJson(string path, string loadStart, string loadEnd, TimeSpan elapsed)
        {
            using var stream = File.Create(path);
            using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteString("date", DateTimeOffset.Now);
            json.WriteString("cpu", Cpu());
            json.WriteNumber("cores", Environment.ProcessorCount);
            json.WriteString("dotnet", Environment.Version.ToString());
            json.WriteString("llamaCpp", $"LLamaSharp 0.30.0 CPU backend ({LibraryLevel()}), {LlamaCppSettings()}");
            json.WriteString("loading", options.Loading.ToString());
            json.WriteString("loadAverageBefore", loadStart);
            json.WriteString("loadAverageAfter", loadEnd);
            json.WriteNumber("seconds", Math.Round(elapsed.TotalSeconds, 1));
            json.WriteStartObject("bandwidthGBps");
            foreach ((int threads, double gbps) in _bandwidth)
                json.WriteNumber(threads.ToString(CultureInfo.InvariantCulture), Math.Round(gbps, 2));
            json.WriteEndObject();
            json.WriteStartObject("fmaPeak");
            json.WriteNumber("bits", ComputePeak.FmaBits);
            PerThreads(json, "multiplyAddsPerSecond", _fmaPeak);
            json.WriteEndObject();
            json.WriteStartObject("int8Peak");
            json.WriteString("path", ComputePeak.Int8Path);
            PerThreads(json, "multiplyAddsPerSecond", _int8Peak);
            json.WriteEndObject();
            json.WriteStartArray("rows");
            foreach (Row r in _rows)
            {
                json.WriteStartObject();
                json.WriteString("model", r.Model);
                json.WriteString("format", r.Format);
                json.WriteString("kvCache", r.KvCache.ToString());
                json.WriteNumber("threads", r.Threads);
                json.WriteString("test", r.Test);
                json.WriteNumber("depth", r.Depth);
                Number(json, "oursTokensPerSecond", r.Ours);
                Number(json, "llamaCppTokensPerSecond", r.LlamaCpp);
                Number(json, "ratio", r.Ratio);
                Number(json, "oursRooflineFraction", r.OursRoofline);
                Number(json, "llamaCppRooflineFraction", r.LlamaRoofline);
                Number(json, "oursPeakFraction", r.OursPeak);
                Number(json, "llamaCppPeakFraction", r.LlamaPeak);
                if (r.FileBytes is long fileBytes)
                {
                    json.WriteNumber("fileBytes", fileBytes);
                    Resident(json, "oursResident", r.OursMemory);
                    Resident(json, "llamaCppResident", r.LlamaMemory);
                }
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

        /// <summary>llama.cpp's attention and KV cache settings, for the table's header and the JSON.</summary>
        private string LlamaCppSettings() => !options.KvColumn
            ? "flash attention off, F32 KV cache"
            : "K and V caches in the kv column's format (ours too), flash attention off"
                + (options.KvCaches.Contains(KvCacheFormat.Q8_0) ? " except with Q8_0 (its quantized V cache requires it)" : "");

        private static string PerThreads(Dictionary<int, double> perSecond) =>
            string.Join(", ", perSecond.Select(kv => $"{kv.Key} thread(s) {kv.Value / 1e9:F1} G"));

        private static void PerThreads(Utf8JsonWriter json, string name, Dictionary<int, double> perSecond)
        {
            json.WriteStartObject(name);
            foreach ((int threads, double value) in perSecond)
                json.WriteNumber(threads.ToString(CultureInfo.InvariantCulture), Math.Round(value));
            json.WriteEndObject();
        }

        /// <summary>Resident memory in bytes: rss (VmRSS), rssFile, rssAnon; null when not measured.</summary>
        private static void Resident(Utf8JsonWriter json, string name, ResidentMemory? memory)
        {
            if (memory is null)
            {
                json.WriteNull(name);
                return;
            }
            json.WriteStartObject(name);
            json.WriteNumber("rss", memory.Total);
            json.WriteNumber("rssFile", memory.File);
            json.WriteNumber("rssAnon", memory.Anonymous);
            json.WriteEndObject();
        }

        internal static void Number(Utf8JsonWriter json, string name, double? value)
        {
            if (value is double v)
                json.WriteNumber(name, Math.Round(v, 4));
            else
                json.WriteNull(name);
        }

        internal static double Median(List<double> values)
        {
            values.Sort();
            int n = values.Count;
            return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
        }

        internal static string Fmt(double? value, string format = "F1") => value is double v ? v.ToString(format, CultureInfo.InvariantCulture) : "n/a";

        private static string Percent(double? fraction) => fraction is double f ? (100 * f).ToString("F0", CultureInfo.InvariantCulture) + " %" : "–";

        internal static string FirstLine(string message)
        {
            int newline = message.IndexOf('\n');
            return newline < 0 ? message : message[..newline];
        }

        internal static string LibraryLevel()
        {
            string? path = LlamaCppOracle.NativeLibraryPath;
            return path is null ? "not loaded" : Path.GetFileName(Path.GetDirectoryName(path)) ?? path;
        }

        internal static string Cpu()
        {
            try
            {
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (line.StartsWith("model name", StringComparison.Ordinal))
                        return line[(line.IndexOf(':') + 1)..].Trim();
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
            return RuntimeInformation.ProcessArchitecture.ToString();
        }

        internal static string LoadAverage()
        {
            try
            {
                return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
            }
            catch (IOException)
            {
                return "?";
            }
            catch (UnauthorizedAccessException)
            {
                return "?";
            }
        }

        internal static void Log(string message) => Console.Error.WriteLine(message);
    }

    /// <summary>
    /// --first-call: a fresh process of this program loads one engine, evaluates one prompt, and prints how long that
    /// first Forward took (the load is not counted: it is what the parent already measures elsewhere).
    /// </summary>
    /// <summary>What a --first-call child measured: see <see cref="FirstCall.Spawn"/>.</summary>
    internal sealed record FirstCallResult(double Seconds, double JitSeconds, double LoadToLogitsSeconds, ResidentMemory? Memory);

    internal static class FirstCall
    {
        public const string ChildFlag = "--first-call-child";

        /// <summary>
        /// Runs a child and returns the seconds its first Forward took, the JIT compilation time within them, the seconds
        /// from the start of its load to the end of that first Forward (load to first logits), and its resident memory then.
        /// </summary>
        public static FirstCallResult Spawn(string model, string format, string engine, int threads, int prompt, string path, WeightLoading loading,
            KvCacheFormat kvCache)
        {
            string self = Environment.ProcessPath ?? "dotnet";
            var start = new ProcessStartInfo { FileName = self, RedirectStandardOutput = true, RedirectStandardError = true };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
                start.ArgumentList.Add(typeof(FirstCall).Assembly.Location);
            foreach (string arg in new[] { ChildFlag, model, format, engine, threads.ToString(CultureInfo.InvariantCulture),
                                           prompt.ToString(CultureInfo.InvariantCulture), path, loading.ToString(), kvCache.ToString() })
                start.ArgumentList.Add(arg);
            using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}");
            var error = process.StandardError.ReadToEndAsync();
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            string[] fields = output.Trim().Split(' ');
            if (process.ExitCode != 0 || fields.Length != 6
                || !double.TryParse(fields[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)
                || !double.TryParse(fields[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double jitSeconds)
                || !double.TryParse(fields[2], NumberStyles.Float, CultureInfo.InvariantCulture, out double loadSeconds)
                || !long.TryParse(fields[3], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long rss)
                || !long.TryParse(fields[4], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long rssFile)
                || !long.TryParse(fields[5], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long rssAnon))
                throw new InvalidOperationException($"first-call child exited with {process.ExitCode}: {error.Result.Trim()} {output.Trim()}");
            return new FirstCallResult(seconds, jitSeconds, loadSeconds, rss < 0 ? null : new ResidentMemory(rss, rssFile, rssAnon));
        }

        /// <summary>The child: args are the flag, model, format, engine, threads, prompt tokens, GGUF path, loading, KV cache format.</summary>
        public static int RunChild(string[] args)
        {
            BenchModel model = BenchModel.All.Single(m => m.Name == args[1]);
            WeightFormat format = Enum.Parse<WeightFormat>(args[2] == "Q4_0" ? nameof(WeightFormat.MostlyQ4_0) : args[2]);
            int threads = int.Parse(args[4], CultureInfo.InvariantCulture), prompt = int.Parse(args[5], CultureInfo.InvariantCulture);
            string path = args[6];
            var loading = Enum.Parse<WeightLoading>(args[7]);
            var kvCache = Enum.Parse<KvCacheFormat>(args[8]);
            var random = new Random(1234);
            int[] tokens = new int[prompt];
            tokens[0] = 1;
            for (int i = 1; i < prompt; i++)
                tokens[i] = random.Next(3, model.Shape.VocabSize);
            long start = 0;
            TimeSpan jitBefore = default;
            long loadStart = Stopwatch.GetTimestamp();
            string? result = null;
            // Called at the first logits, with the model and its context still alive (their memory is resident).
            void Finish()
            {
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                double loadSeconds = Stopwatch.GetElapsedTime(loadStart).TotalSeconds;
                double jitSeconds = (System.Runtime.JitInfo.GetCompilationTime() - jitBefore).TotalSeconds;
                ResidentMemory memory = ResidentMemory.OfThisProcess() ?? new ResidentMemory(-1, -1, -1);
                result = string.Create(CultureInfo.InvariantCulture, $"{seconds:R} {jitSeconds:R} {loadSeconds:R} {memory.Total} {memory.File} {memory.Anonymous}");
            }
            if (args[3] == "ours")
            {
                LoadedModel loaded = model.Load(format, path, loading);
                using IDisposable weights = loaded.Model;
                using ILlamaSession session = loaded.CreateSession(new SessionOptions { Threads = threads, KvCache = kvCache });
                jitBefore = System.Runtime.JitInfo.GetCompilationTime();
                start = Stopwatch.GetTimestamp();
                session.Forward(tokens);
                Finish();
            }
            else
            {
                LlamaCppOracle.EnsureNativeLibrary();
                using var llama = new LlamaCppOracle(path, threads, contextSize: model.Shape.MaxContext, batchSize: Math.Max(prompt, 32), Bench.LlamaCppType(kvCache));
                jitBefore = System.Runtime.JitInfo.GetCompilationTime();
                start = Stopwatch.GetTimestamp();
                llama.Evaluate(tokens);
                _ = llama.Logits();
                Finish();
            }
            Console.WriteLine(result);
            return 0;
        }
    }
}
