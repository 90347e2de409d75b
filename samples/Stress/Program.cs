// Stress harness: short load → prefill → decode → dispose cycles over every way a model runs (F32, Q8_0 and Q4_0
// kernels; mapped and copied weights; 1 and 2 threads), each checked bit for bit against the same cycle on one
// thread, in this process and then in fresh child processes that leave a crash dump and a crash report
// (createdump) if they die. Written to find the fatal error of issue 17 (a worker-pool race; see WorkerPool.TryClaim).
//
//   dotnet run --project samples/Stress -c Release -- [--cycles N] [--processes P] [--cycles-per-process M]
//                                                    [--cache DIR] [--dumps DIR]
//
// Defaults: 480 cycles here, then 10 processes × 48 cycles. The long run: --cycles 5000 --processes 50
// --cycles-per-process 100 (10,000 cycles). Exit code 0 when every cycle matched and every process exited
// cleanly, 1 otherwise, 2 for bad arguments.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using Llama.Compiled;
using Stress;
using Llama.Compiled.CompilerServices;
using Llama.Compiled.Tools;

int cycles = 480, processes = 10, cyclesPerProcess = 48;
bool child = false;
string cacheDir = Path.Combine(Path.GetTempPath(), "llama-compiled-stress");
string dumpDir = Path.Combine(Path.GetTempPath(), "llama-compiled-stress-dumps");
try
{
    for (int i = 0; i < args.Length; i++)
    {
        string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
        int Count() => int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : throw new ArgumentException($"{args[i]} needs a non-negative integer");
        switch (args[i])
        {
            case "--cycles": cycles = Count(); break;
            case "--processes": processes = Count(); break;
            case "--cycles-per-process": cyclesPerProcess = Count(); break;
            case "--cache": cacheDir = Value(); break;
            case "--dumps": dumpDir = Value(); break;
            case "--child": child = true; break;
            default: throw new ArgumentException($"unknown option {args[i]}");
        }
    }
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

var targets = Targets.All(cacheDir);
var harness = new Harness(targets);
int failures = harness.Run(cycles, label: child ? $"process {Environment.ProcessId}" : "this process");
if (child)
    return failures == 0 ? 0 : 1;

Directory.CreateDirectory(dumpDir);
for (int p = 0; p < processes; p++)
    failures += ChildProcesses.Run(p, cyclesPerProcess, cacheDir, dumpDir) ? 0 : 1;

Console.WriteLine(failures == 0
    ? $"stress: {cycles + processes * cyclesPerProcess} cycles, {processes} fresh processes: no failure"
    : $"stress: {failures} failure(s)");
return failures == 0 ? 0 : 1;

namespace Stress
{
    [LlamaModel("stories260K/hf/config.json")]
    public partial class Stories260K;

    [LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.Q8_0)]
    public partial class Stories260KQ8;

    [LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.Q4_0)]
    public partial class Stories260KQ4;

    [LlamaModel("Models/wide/config.json")]
    public partial class Wide;

    [LlamaModel("Models/wide/config.json", Weights = WeightFormat.Q8_0)]
    public partial class WideQ8;

    [LlamaModel("Models/wide/config.json", Weights = WeightFormat.Q4_0)]
    public partial class WideQ4;

    /// <summary>A compiled class with the file it loads: opens a model and a session on it with a thread count.</summary>
    internal sealed record Target(string Name, int VocabSize, Func<WeightLoading, ILlamaModel> Load, Func<ILlamaModel, int, ILlamaSession> CreateSession);

    internal static class Targets
    {
        private static string SharedModels =>
            Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "models"));

        /// <summary>Every compiled class, each with a file of another stored form where there is one.</summary>
        public static Target[] All(string cacheDir)
        {
            string stories = Path.Combine(SharedModels, "stories260K");
            if (!Directory.Exists(stories))
                stories = Path.GetFullPath(Path.Combine("..", "shared", "models", "stories260K"));
            string wideF32 = WideModel.Write(Path.Combine(cacheDir, "wide-f32.gguf"), GgufTensorType.F32);
            string wideQ8 = WideModel.Write(Path.Combine(cacheDir, "wide-q8_0.gguf"), GgufTensorType.Q8_0);
            return
            [
                new("stories260K F32 (safetensors)", Stories260K.VocabSize, l => Stories260K.Load(Path.Combine(stories, "hf"), l),
                    (m, t) => ((Stories260K)m).CreateSession(new SessionOptions { Threads = t })),
                new("stories260K Q8_0 (Q8_0 GGUF)", Stories260K.VocabSize, l => Stories260KQ8.Load(Path.Combine(stories, "stories260K-q8_0.gguf"), l),
                    (m, t) => ((Stories260KQ8)m).CreateSession(new SessionOptions { Threads = t })),
                new("stories260K Q4_0 (F16 GGUF)", Stories260K.VocabSize, l => Stories260KQ4.Load(Path.Combine(stories, "stories260K-f16.gguf"), l),
                    (m, t) => ((Stories260KQ4)m).CreateSession(new SessionOptions { Threads = t })),
                new("wide F32 (F32 GGUF)", Wide.VocabSize, l => Wide.Load(wideF32, l),
                    (m, t) => ((Wide)m).CreateSession(new SessionOptions { Threads = t })),
                new("wide Q8_0 (Q8_0 GGUF)", Wide.VocabSize, l => WideQ8.Load(wideQ8, l),
                    (m, t) => ((WideQ8)m).CreateSession(new SessionOptions { Threads = t })),
                new("wide Q4_0 (F32 GGUF)", Wide.VocabSize, l => WideQ4.Load(wideF32, l),
                    (m, t) => ((WideQ4)m).CreateSession(new SessionOptions { Threads = t })),
            ];
        }
    }

    /// <summary>Random weights for the wide shape, written once into the cache folder.</summary>
    internal static class WideModel
    {
        public static string Write(string path, GgufTensorType type)
        {
            if (File.Exists(path))
                return path;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            string partial = $"{path}.{Environment.ProcessId}.partial";
            GgufWriter.WriteLlama(partial, Wide.CompiledShape, Tensor, type, RopeLayout.AdjacentPairs, vocabulary: null, name: "stress-wide");
            File.Move(partial, path, overwrite: true);
            return path;
        }

        /// <summary>N(0, 1/fan-in) matrices and an N(0, 1) embedding, norms 1 ± 0.1: a function of the tensor's name.</summary>
        private static float[] Tensor(string name)
        {
            LlamaModelShape s = Wide.CompiledShape;
            int q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim, h = s.HiddenSize, ffn = s.IntermediateSize;
            (int count, int fanIn) = name switch
            {
                "model.embed_tokens.weight" or "lm_head.weight" => (s.VocabSize * h, name == "lm_head.weight" ? h : 1),
                "model.norm.weight" => (h, 0),
                _ when name.EndsWith("layernorm.weight", StringComparison.Ordinal) => (h, 0),
                _ when name.EndsWith("q_proj.weight", StringComparison.Ordinal) => (q * h, h),
                _ when name.EndsWith("k_proj.weight", StringComparison.Ordinal) || name.EndsWith("v_proj.weight", StringComparison.Ordinal) => (kv * h, h),
                _ when name.EndsWith("o_proj.weight", StringComparison.Ordinal) => (h * q, q),
                _ when name.EndsWith("down_proj.weight", StringComparison.Ordinal) => (h * ffn, ffn),
                _ => (ffn * h, h), // gate_proj, up_proj
            };
            int seed = 0;
            foreach (char ch in name)
                seed = seed * 31 + ch; // string.GetHashCode differs between processes
            var random = new Random(seed);
            var values = new float[count];
            for (int i = 0; i < count; i++)
            {
                float normal = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
                values[i] = fanIn == 0 ? 1 + 0.1f * normal : normal / MathF.Sqrt(fanIn);
            }
            return values;
        }
    }

    /// <summary>Runs cycles over every (class, loading, threads) and checks each against the one-thread mapped run.</summary>
    internal sealed class Harness(Target[] targets)
    {
        private static readonly int[] s_promptLengths = [1, 5, 19, 40, 77];
        private const int DecodeSteps = 8;
        private static readonly WeightLoading[] s_loadings = [WeightLoading.Map, WeightLoading.Copy];
        private static readonly int[] s_threadCounts = [1, 2];

        private readonly Dictionary<(int Target, int Prompt), Outcome> _expected = [];

        /// <summary>Runs <paramref name="cycles"/> cycles; prints one line per failure and a summary; returns the failures.</summary>
        public int Run(int cycles, string label)
        {
            var clock = Stopwatch.StartNew();
            int failures = 0;
            int configurations = targets.Length * s_loadings.Length * s_threadCounts.Length;
            for (int cycle = 0; cycle < cycles; cycle++)
            {
                int c = cycle % configurations;
                int target = c % targets.Length;
                WeightLoading loading = s_loadings[c / targets.Length % s_loadings.Length];
                int threads = s_threadCounts[c / (targets.Length * s_loadings.Length)];
                int prompt = cycle / configurations % s_promptLengths.Length;
                string what = $"{targets[target].Name}, {loading}, {threads} thread(s), prompt of {s_promptLengths[prompt]}";
                try
                {
                    Outcome expected = Expected(target, prompt);
                    Outcome actual = RunCycle(targets[target], loading, threads, Prompt(targets[target], prompt));
                    if (!actual.Equals(expected))
                    {
                        failures++;
                        Console.WriteLine($"{label}: cycle {cycle} ({what}): {actual} differs from the one-thread run's {expected}");
                    }
                }
                catch (Exception e)
                {
                    failures++;
                    Console.WriteLine($"{label}: cycle {cycle} ({what}): {e}");
                }
            }
            Console.WriteLine($"{label}: {cycles} cycles, {failures} failure(s), {clock.Elapsed.TotalSeconds:F1} s");
            return failures;
        }

        private Outcome Expected(int target, int prompt)
        {
            if (!_expected.TryGetValue((target, prompt), out Outcome outcome))
                _expected[(target, prompt)] = outcome = RunCycle(targets[target], WeightLoading.Map, 1, Prompt(targets[target], prompt));
            return outcome;
        }

        private static int[] Prompt(Target target, int prompt)
        {
            var random = new Random(prompt);
            int[] ids = new int[s_promptLengths[prompt]];
            ids[0] = 1; // BOS
            for (int i = 1; i < ids.Length; i++)
                ids[i] = random.Next(3, target.VocabSize);
            return ids;
        }

        /// <summary>Load, prefill, greedy decode, dispose: the tokens chosen and a hash of the last logits' bits.</summary>
        private static Outcome RunCycle(Target target, WeightLoading loading, int threads, int[] prompt)
        {
            using ILlamaModel model = target.Load(loading);
            using ILlamaSession session = target.CreateSession(model, threads);
            ReadOnlySpan<float> logits = session.Forward(prompt);
            int[] tokens = new int[DecodeSteps];
            for (int step = 0; step < DecodeSteps; step++)
            {
                tokens[step] = ArgMax(logits);
                logits = session.Forward(tokens[step]);
            }
            ulong hash = 14695981039346656037UL;
            foreach (float value in logits)
                hash = (hash ^ BitConverter.SingleToUInt32Bits(value)) * 1099511628211UL;
            return new Outcome(string.Join(' ', tokens), hash);
        }

        private static int ArgMax(ReadOnlySpan<float> values)
        {
            int best = 0;
            for (int i = 1; i < values.Length; i++)
            {
                if (values[i] > values[best])
                    best = i;
            }
            return best;
        }

        private readonly record struct Outcome(string Tokens, ulong LogitsHash)
        {
            public override string ToString() => $"tokens [{Tokens}], logits hash {LogitsHash:x16}";
        }
    }

    /// <summary>Fresh processes of this program, with crash dumps and crash reports enabled.</summary>
    internal static class ChildProcesses
    {
        /// <summary>Runs child <paramref name="index"/>; true when it exited with 0. Prints its output, and on a crash where the dump went.</summary>
        public static bool Run(int index, int cycles, string cacheDir, string dumpDir)
        {
            string self = Environment.ProcessPath ?? "dotnet";
            var start = new ProcessStartInfo { FileName = self, RedirectStandardOutput = true, RedirectStandardError = true };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
                start.ArgumentList.Add(typeof(Harness).Assembly.Location);
            foreach (string arg in new[] { "--child", "--cycles", cycles.ToString(CultureInfo.InvariantCulture), "--cache", cacheDir })
                start.ArgumentList.Add(arg);
            // A fatal error in the runtime (an access violation in unmanaged or unsafe code, heap corruption) ends the
            // process with a signal and no exception to catch: createdump writes a dump with every thread's stack and
            // a JSON crash report beside it.
            start.Environment["DOTNET_DbgEnableMiniDump"] = "1";
            start.Environment["DOTNET_DbgMiniDumpType"] = "1";
            start.Environment["DOTNET_DbgMiniDumpName"] = Path.Combine(dumpDir, "stress.%p.dmp");
            start.Environment["DOTNET_EnableCrashReport"] = "1";

            using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}");
            var errors = new System.Text.StringBuilder();
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (errors) errors.AppendLine(e.Data); };
            process.BeginErrorReadLine();
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Console.Write(output);
            if (process.ExitCode == 0)
                return true;
            string dump = Path.Combine(dumpDir, $"stress.{process.Id}.dmp");
            Console.WriteLine($"child {index} (pid {process.Id}) exited with {process.ExitCode}" +
                (File.Exists(dump) ? $"; dump {dump}, crash report {dump}.crashreport.json" : "; no dump written"));
            lock (errors)
                Console.WriteLine(errors.ToString().TrimEnd());
            return false;
        }
    }
}
