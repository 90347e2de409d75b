namespace Llama.Compiled.Families.Tests;

/// <summary>A llama config with linear rope_scaling (factor 4, the older "type" key), multi-query attention (2 heads, 1 KV head).</summary>
[LlamaModel("Configs/llama_linear.json")]
public partial class LlamaLinearModel;

public sealed class LlamaLinearModelTests : FamilyTests
{
    protected override string ConfigFile => "llama_linear.json";

    protected override ILlamaModel Load(string folder) => LlamaLinearModel.Load(folder);
}
