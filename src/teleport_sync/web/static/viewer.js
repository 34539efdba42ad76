// The interactive 3D view of a downloaded model, by @mkkellogg/gaussian-splats-3d (MIT) on
// three.js (MIT), both served by teleport-sync itself from /static/vendor. If they fail to
// load or WebGL is missing, the still thumbnail drawn by the daemon is shown instead.
const root = document.getElementById("viewer");

function fallBack(reason) {
  root.classList.add("failed");
  const img = document.createElement("img");
  img.id = "thumbnail";
  img.className = "thumbnail";
  img.alt = "the model's splats seen from above and to the side";
  img.src = root.dataset.thumbnail;
  root.replaceChildren(img);
  root.dataset.state = "thumbnail: " + reason;
}

// Splat files are usually y-down (OpenCV cameras): look from a little above and in front, far
// enough back for the whole model (the daemon measured its centre and radius).
function camera() {
  const centre = (root.dataset.centre || "0,0,0").split(",").map(Number);
  const r = Number(root.dataset.radius || 1);
  return {
    cameraUp: [0, -1, 0],
    initialCameraLookAt: centre,
    initialCameraPosition: [centre[0], centre[1] - 1.2 * r, centre[2] - 3.2 * r],
  };
}

// The path of the cameras Teleport posed (metadata v2's camera list), as a three.js scene the
// viewer renders beside the splats (its `threeScene` option). Any failure leaves it out: the
// model is shown either way.
async function cameraPath() {
  if (!root.dataset.cameras) return {};
  try {
    const answer = await fetch(root.dataset.cameras, { credentials: "same-origin" });
    const positions = (await answer.json()).positions || [];
    if (positions.length < 2) return {};
    const THREE = await import("/static/vendor/three.module.min.js");
    const scene = new THREE.Scene();
    const points = positions.map((p) => new THREE.Vector3(p[0], p[1], p[2]));
    const geometry = new THREE.BufferGeometry().setFromPoints(points);
    scene.add(new THREE.Line(geometry, new THREE.LineBasicMaterial({ color: 0xff8800 })));
    scene.add(new THREE.Points(geometry, new THREE.PointsMaterial({ color: 0xff8800, size: 4, sizeAttenuation: false })));
    root.dataset.cameraPath = String(points.length);
    return { threeScene: scene };
  } catch (error) {
    root.dataset.cameraPath = "none: " + String(error);
    return {};
  }
}

async function show() {
  const GS = await import("/static/vendor/gaussian-splats-3d.module.js");
  const viewer = new GS.Viewer({
    rootElement: root,
    ...camera(),
    ...(await cameraPath()),
    sharedMemoryForWorkers: false,
    sceneRevealMode: GS.SceneRevealMode.Instant,
    logLevel: GS.LogLevel.None,
  });
  await viewer.addSplatScene(root.dataset.ply, {
    format: GS.SceneFormat.Ply,
    showLoadingUI: false,
    progressiveLoad: false,
  });
  viewer.start();
  root.dataset.state = "3d";
}

if (root) {
  show().catch((error) => fallBack(String(error)));
}
