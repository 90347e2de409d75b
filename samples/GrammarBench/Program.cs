using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Llama.Compiled;
using Llama.Compiled.Tools;
using Microsoft.ML.Tokenizers;

// Decode tokens/s of one session without a grammar, with Grammar.AnyJson and with a JSON schema, on random weights.
// Random weights make an adversarial "model": its tokens are drawn nearly uniformly, so outside strings the grammar
// rejects most of them and the full mask is used (cached per grammar state); a real model mostly agrees with the grammar.
string cache = args.Length > 0 ? args[0] : Path.Combine(Path.GetTempPath(), "llama-compiled-bench");
Directory.CreateDirectory(cache);
string root = FindRoot();
Tokenizer tokenizer = LlamaTokenizers.Load(Path.Combine(root, "..", "shared", "models", "llama2-tokenizer"));

const string Schema = """
    {"type":"array","minItems":500,"items":{"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer","minimum":0,"maximum":150},"tags":{"type":"array","items":{"enum":["red","green","blue"]},"maxItems":3}},"required":["name","age"]}}
    """;
// minItems 500: the array never closes within the token budget, so every case generates the same number of tokens.
var cases = new (string Name, Grammar? Grammar)[] { ("none", null), ("schema", Grammar.FromJsonSchema(Schema)), ("gbnf", Grammar.FromGbnf("root ::= (\"- \" [a-z ]{1,30} \"\\n\"){500}")) };

Run("stories15M (f32)", Path.Combine(cache, "stories15M-v2-f32.gguf"), Stories15M.CompiledShape, GgufTensorType.F32, p => { var m = Stories15M.Load(p); return (m, m.CreateSession(new SessionOptions { Threads = 2 })); }, 200, 7);
Run("tinyllama-1.1b (q8_0)", Path.Combine(cache, "tinyllama-1.1b-v2-q8_0.gguf"), TinyLlamaQ8.CompiledShape, GgufTensorType.Q8_0, p => { var m = TinyLlamaQ8.Load(p); return (m, m.CreateSession(new SessionOptions { Threads = 2 })); }, 64, 5);

void Run(string name, string path, LlamaModelShape shape, GgufTensorType type, Func<string, (IDisposable Model, ILlamaSession Session)> load, int tokens, int runs)
{
    if (!File.Exists(path))
    {
        Console.WriteLine($"writing {path}");
        RandomLlama.WriteGguf(path, shape, seed: 1, type, Path.GetFileNameWithoutExtension(path));
    }
    (IDisposable model, ILlamaSession session) = load(path);
    using IDisposable ownedModel = model;
    using ILlamaSession ownedSession = session;
    var generator = new TextGenerator(session, tokenizer);
    Console.WriteLine($"{name}: decode tok/s over {tokens} tokens, median of {runs} runs (each case interleaved, seeds 1..{runs})");
    var results = cases.ToDictionary(c => c.Name, _ => new List<double>());
    var generated = cases.ToDictionary(c => c.Name, _ => new List<int>());
    for (int run = 0; run <= runs; run++)
    {
        foreach ((string caseName, Grammar? grammar) in cases)
        {
            var options = new GenerationOptions { MaxNewTokens = tokens, Grammar = grammar, Sampling = new SamplingOptions { Temperature = 1f, Seed = (ulong)run + 1 } };
            GenerationResult result = generator.GenerateText("Once upon a time", options);
            if (run == 0 || Environment.GetEnvironmentVariable("GRAMMAR_BENCH_SHOW") is not null)
                Console.WriteLine($"    [{caseName}] {result.Stats.StopReason} {result.Stats.GeneratedTokens}: {result.Text[..Math.Min(200, result.Text.Length)].ReplaceLineEndings(" ")}");
            if (run == 0)
                continue; // warm-up: JIT, and a first pass over the grammar states
            results[caseName].Add(result.Stats.DecodeTokensPerSecond);
            generated[caseName].Add(result.Stats.GeneratedTokens);
        }
    }
    double baseline = Median(results["none"]);
    foreach ((string caseName, _) in cases)
    {
        double median = Median(results[caseName]);
        Console.WriteLine($"  {caseName,-8} {median,8:F1} tok/s  ({median / baseline - 1:+0.0%;-0.0%;0.0%})  tokens {string.Join(",", generated[caseName])}");
    }
}

static double Median(List<double> values)
{
    var sorted = values.OrderBy(v => v).ToArray();
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}

static string FindRoot()
{
    for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
    {
        if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
            return dir;
    }
    return Directory.GetCurrentDirectory();
}

[LlamaModel("Models/stories15M/config.json")]
public partial class Stories15M;

[LlamaModel("Models/tinyllama-1.1b/config.json", Weights = WeightFormat.Q8_0)]
public partial class TinyLlamaQ8;
